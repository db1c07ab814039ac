"""D-FINE training transforms: photometric distort, IoU crop, sanitize,
zoom-out, pipeline."""
import numpy as np
import pytest
import torch
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope

import dfine_mmdet  # noqa: F401
from dfine_mmdet.datasets.transforms.iou_crop import (RandomIoUCrop,
                                                      box_iou_xyxy)
from dfine_mmdet.datasets.transforms.photometric_distort import (
    RandomPhotometricDistort, adjust_brightness, adjust_contrast, adjust_hue,
    adjust_saturation)
from dfine_mmdet.datasets.transforms.sanitize_boxes import \
    SanitizeBoundingBoxes


def _results(boxes, h=100, w=120, labels=None, img=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = boxes.shape[0]
    if img is None:
        img = np.random.RandomState(0).randint(0, 256,
                                               (h, w, 3)).astype(np.uint8)
    return dict(
        img=img,
        img_shape=img.shape[:2],
        ori_shape=img.shape[:2],
        gt_bboxes=HorizontalBoxes(torch.from_numpy(boxes)),
        gt_bboxes_labels=np.arange(n, dtype=np.int64)
        if labels is None else labels,
        gt_ignore_flags=np.zeros(n, dtype=bool))


# ---------------------------------------------------------------- photometric
def test_photometric_kernels_hand_computed():
    px = np.array([[[100, 50, 200]]], np.uint8)
    # brightness: img * b, clamped, truncated
    assert adjust_brightness(px, 1.125).tolist() == [[[112, 56, 225]]]
    assert adjust_brightness(px, 1.5).tolist() == [[[150, 75, 255]]]
    # contrast: blend with mean grey; grey(100,50,200) =
    # floor(29.89+29.35+22.8) = 82
    assert adjust_contrast(px, 0.5).tolist() == [[[91, 66, 141]]]
    # saturation: blend with the pixel's grey (82)
    assert adjust_saturation(px, 0.0).tolist() == [[[82, 82, 82]]]
    assert adjust_saturation(px, 2.0).tolist() == [[[118, 18, 255]]]
    # hue: red rotated by half / a third of the circle -> cyan / green
    red = np.array([[[255, 0, 0]]], np.uint8)
    assert adjust_hue(red, 0.5).tolist() == [[[0, 255, 255]]]
    assert adjust_hue(red, 1 / 3).tolist() == [[[0, 255, 0]]]
    assert adjust_hue(red, 0.0).tolist() == [[[255, 0, 0]]]


def test_photometric_p0_is_identity_and_p1_applies_everything():
    res = _results([[0, 0, 10, 10]])
    img = res['img'].copy()
    out = RandomPhotometricDistort(p=0.0).transform(res)
    assert np.array_equal(out['img'], img)
    t = RandomPhotometricDistort(p=1.0)
    np.random.seed(3)
    params = t.get_params()
    assert all(params[k] is not None
               for k in ('brightness', 'contrast', 'saturation', 'hue'))
    assert 0.875 <= params['brightness'] <= 1.125 and -0.05 <= params[
        'hue'] <= 0.05
    assert sorted(params['channel_permutation'].tolist()) == [0, 1, 2]


def test_photometric_each_op_has_probability_p():
    t = RandomPhotometricDistort(p=0.5)
    np.random.seed(0)
    counts = dict(
        brightness=0, contrast=0, saturation=0, hue=0, channel_permutation=0)
    n = 4000
    for _ in range(n):
        params = t.get_params()
        for k in counts:
            counts[k] += params[k] is not None
    for k, c in counts.items():
        assert abs(c / n - 0.5) < 0.03, (k, c)


def test_photometric_output_bgr_uint8_and_boxes_untouched():
    res = _results([[5, 5, 50, 40]])
    np.random.seed(1)
    out = RandomPhotometricDistort(p=1.0).transform(res)
    assert out['img'].dtype == np.uint8 and out['img'].shape == (100, 120, 3)
    assert out['gt_bboxes'].tensor.tolist() == [[5, 5, 50, 40]]
    with pytest.raises(TypeError, match='uint8'):
        RandomPhotometricDistort().transform(
            dict(img=np.zeros((4, 4, 3), np.float32)))


# -------------------------------------------------------------------- IoU crop
def test_iou_crop_p0_and_no_boxes_unchanged():
    res = _results([[10, 10, 30, 30]])
    img = res['img']
    assert RandomIoUCrop(p=0.0).transform(res)['img'] is img
    empty = _results(np.zeros((0, 4)))
    out = RandomIoUCrop(p=1.0).transform(empty)
    assert out['img'].shape == (100, 120, 3)


def test_iou_crop_invariants():
    t = RandomIoUCrop(p=1.0)
    boxes = np.array([[10, 10, 40, 30], [60, 50, 110, 95], [0, 0, 120, 100],
                      [80, 5, 84, 9]], np.float32)
    n_cropped = 0
    for seed in range(200):
        np.random.seed(seed)
        res = _results(boxes.copy())
        out = t.transform(res)
        h, w = out['img'].shape[:2]
        assert out['img_shape'] == (h, w)
        b = out['gt_bboxes'].tensor.numpy()
        assert b.shape == (4, 4) and out['gt_bboxes_labels'].tolist() == [
            0, 1, 2, 3
        ]
        if (h, w) == (100, 120):
            continue
        n_cropped += 1
        assert 30 <= w <= 120 and 30 <= h <= 100 and 0.5 <= w / h <= 2.0
        assert (b >= 0).all() and (b[:, [0, 2]] <= w).all() and (b[:, [1, 3]]
                                                                 <= h).all()
        kept = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        assert kept.any()
    # ~ p * 6/7 of the calls crop
    assert 120 < n_cropped < 200


def test_iou_crop_min_iou_constraint_and_zeroing():
    # only option: min IoU 0.9 with a box whose centre is in the crop
    t = RandomIoUCrop(p=1.0, sampler_options=[0.9])
    big = [2, 2, 118, 98]
    off_centre = [0, 0, 6, 6]
    for seed in range(20):
        np.random.seed(seed)
        res = _results([big, off_centre])
        out = t.transform(res)
        h, w = out['img'].shape[:2]
        b = out['gt_bboxes'].tensor.numpy()
        # the crop must overlap the big box with IoU >= 0.9 -> nearly the
        # whole image
        assert h * w >= 0.9 * (116 * 96) - 1
        if (h, w) != (100, 120):
            # big box clamped to the crop == the crop itself (IoU of crop with
            # big >= 0.9)
            assert b[0, 2] - b[0, 0] > 0.9 * w - 3
    # box_iou helper
    ious = box_iou_xyxy(
        np.array([[0, 0, 10, 10], [5, 5, 15, 15]], float),
        np.array([0, 0, 10, 10], float))
    assert ious.tolist() == pytest.approx([1.0, 25 / 175])


# -------------------------------------------------------------------- sanitize
def test_sanitize_rules():
    boxes = [
        [10, 10, 11, 11],  # 1x1: kept (torchvision: w >= min_size)
        [10, 10, 10.5, 20],  # w 0.5: dropped
        [0, 0, 0, 0],  # zeroed by the IoU crop: dropped
        [-1, 5, 20, 20],  # negative coordinate: dropped
        [100, 10, 121, 20],  # x2 > W (120): dropped
        [0, 0, 120, 100],  # the whole image: kept
    ]
    res = _results(boxes, labels=np.array([5, 4, 3, 2, 1, 0]))
    res['gt_ignore_flags'] = np.array([0, 0, 0, 0, 0, 1], bool)
    out = SanitizeBoundingBoxes(min_size=1).transform(dict(res))
    assert out['gt_bboxes_labels'].tolist() == [5, 0]
    assert out['gt_bboxes'].tensor.tolist() == [[10, 10, 11, 11],
                                                [0, 0, 120, 100]]
    assert out['gt_ignore_flags'].tolist() == [False, True]
    res = _results(boxes, labels=np.array([5, 4, 3, 2, 1, 0]))
    res['gt_ignore_flags'] = np.array([0, 0, 0, 0, 0, 1], bool)
    out = SanitizeBoundingBoxes(min_size=1, drop_ignored=True).transform(res)
    assert out['gt_bboxes_labels'].tolist() == [5]


def test_sanitize_keeps_image_without_boxes():
    res = _results([[0, 0, 0.5, 0.5]])
    out = SanitizeBoundingBoxes().transform(res)
    assert out is not None and len(
        out['gt_bboxes']) == 0 and out['gt_bboxes_labels'].shape == (0, )


# -------------------------------------------------------- zoom-out + pipeline
def test_zoom_out_is_mmdet_expand_with_zero_fill():
    t = TRANSFORMS.build(
        dict(
            type='Expand',
            mean=(0, 0, 0),
            to_rgb=False,
            ratio_range=(1, 4),
            prob=1.0))
    np.random.seed(0)
    img = np.full((20, 30, 3), 200, np.uint8)
    out = t.transform(_results([[2, 3, 12, 13]], img=img))
    h, w = out['img'].shape[:2]
    assert 20 <= h <= 80 and 30 <= w <= 120 and (h, w) != (20, 30)
    b = out['gt_bboxes'].tensor[0].numpy()
    left, top = int(b[0]) - 2, int(b[1]) - 3
    assert np.all(out['img'][top:top + 20, left:left + 30] == 200)
    assert out['img'].sum() == 200 * 20 * 30 * 3  # everything else is 0
    assert b.tolist() == [left + 2, top + 3, left + 12, top + 13]


def test_official_train_pipeline_end_to_end(project_root):
    from mmengine.config import Config
    cfg = Config.fromfile(
        f'{project_root}/configs/dfine/_base_/datasets/coco.py')
    names = [t['type'] for t in cfg.train_pipeline]
    assert names == [
        'CheckedLoadImageFromFile', 'LoadAnnotations', 'SanitizeBoundingBoxes',
        'RandomPhotometricDistort', 'Expand', 'RandomIoUCrop',
        'SanitizeBoundingBoxes', 'RandomFlip', 'Resize',
        'SanitizeBoundingBoxes', 'PackDetInputs'
    ]
    init_default_scope('mmdet')
    pipeline = Compose(cfg.train_pipeline[2:])  # skip file loading
    for seed in range(6):
        np.random.seed(seed)
        res = _results([[10, 10, 40, 30], [60, 50, 110, 95], [3, 3, 3.5, 9]])
        res['gt_ignore_flags'] = np.array([0, 1, 0],
                                          bool)  # a crowd box: dropped first
        out = pipeline(res)
        inputs, sample = out['inputs'], out['data_samples']
        assert tuple(inputs.shape) == (3, 640, 640)
        b = sample.gt_instances.bboxes.tensor
        assert len(sample.ignored_instances) == 0
        assert set(sample.gt_instances.labels.tolist()) <= {0}
        assert ((b[:, 2:] - b[:, :2])
                >= 1).all() and (b >= 0).all() and (b <= 640).all()


def test_sanitize_counts_and_logs_invalid_boxes(tmp_path):
    from mmengine.logging import MMLogger
    log_file = tmp_path / 'sanitize.log'
    MMLogger.get_instance('test_sanitize_log', log_file=str(log_file))
    t = SanitizeBoundingBoxes(min_size=1, drop_ignored=True, log_dropped=True)
    for _ in range(
            3):  # 2 invalid boxes per image; the crowd box is not counted
        res = _results([[10, 10, 10.5, 20], [-1, 5, 20, 20], [0, 0, 30, 30],
                        [5, 5, 50, 50]])
        res['gt_ignore_flags'] = np.array([0, 0, 1, 0], bool)
        res['img_path'] = 'img_with_bad_boxes.jpg'
        out = t.transform(res)
        assert out['gt_bboxes'].tensor.tolist() == [[5, 5, 50, 50]]
    assert t.num_dropped == 6
    text = log_file.read_text()
    # reported at the 1st, 2nd, 4th, ... drop: after images 1 (2 dropped) and
    # 2 (4)
    assert text.count('SanitizeBoundingBoxes: dropped 2 invalid box(es)') == 2
    assert 'img_with_bad_boxes.jpg' in text and '4 dropped so far' in text
    quiet = SanitizeBoundingBoxes(min_size=1)
    quiet.transform(_results([[10, 10, 10.5, 20]]))
    assert quiet.num_dropped == 0
