"""Dense O2O of DEIM: Mosaic transform, batch MixUp, epoch-policy hook."""
import os.path as osp
import random

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.structures import InstanceData

# yapf: disable
from dfine_mmdet.datasets.transforms.deim_mosaic import (MOSAIC_FLAG,
                                                         DEIMMosaic,
                                                         SkipAfterMosaic,
                                                         affine_boxes,
                                                         affine_matrix,
                                                         short_side_size)
# yapf: enable
from dfine_mmdet.models.data_preprocessors import DEIMBatchMixUp

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _sample(h, w, value, boxes, labels):
    img = np.full((h, w, 3), value, dtype=np.uint8)
    return dict(
        img=img,
        img_shape=(h, w),
        gt_bboxes=HorizontalBoxes(np.asarray(boxes, np.float32)),
        gt_bboxes_labels=np.asarray(labels, np.int64),
        gt_ignore_flags=np.zeros(len(labels), bool))


def test_short_side_size_is_torchvision_resize():
    # torchvision Resize(320): short side 320, long int(320 * long / short)
    assert short_side_size(480, 640, 320) == (320, 426)
    assert short_side_size(640, 480, 320) == (426, 320)
    assert short_side_size(333, 333, 320) == (320, 320)


def test_grid_placement_and_box_offsets():
    mosaic = DEIMMosaic(fill_value=0)
    samples = []
    for i, (h, w) in enumerate([(320, 426), (426, 320), (320, 320),
                                (320, 500)]):
        samples.append(
            dict(
                img=np.full((h, w, 3), 50 * (i + 1), np.uint8),
                boxes=np.array([[10, 20, 60, 90]], np.float32),
                labels=np.array([i]),
                ignore=np.array([False])))
    out = mosaic.mosaic(samples, matrix=np.array([[1., 0, 0], [0, 1, 0]]))
    max_h, max_w = 426, 500
    assert out['img'].shape == (2 * max_h, 2 * max_w, 3)
    offsets = [(0, 0), (max_w, 0), (0, max_h), (max_w, max_h)]
    for i, (ox, oy) in enumerate(offsets):
        h, w = samples[i]['img'].shape[:2]
        cell = out['img'][oy:oy + max_h, ox:ox + max_w]
        assert (cell[:h, :w] == 50 * (i + 1)).all()
        assert (cell[h:, :] == 0).all() and (cell[:, w:] == 0).all()
        np.testing.assert_array_equal(out['boxes'][i],
                                      [10 + ox, 20 + oy, 60 + ox, 90 + oy])
    np.testing.assert_array_equal(out['labels'], [0, 1, 2, 3])


def test_affine_moves_pixels_and_boxes_together():
    """A white square and its box stay together under a random affine."""
    random.seed(3)
    mosaic = DEIMMosaic()
    for _ in range(5):
        canvas_h, canvas_w = 300, 400
        m = mosaic._random_affine(canvas_w, canvas_h)
        img = np.zeros((canvas_h, canvas_w), np.uint8)
        img[100:140, 150:210] = 255
        warped = cv2.warpAffine(
            img, m, (canvas_w, canvas_h), flags=cv2.INTER_NEAREST)
        box = affine_boxes(
            np.array([[150, 100, 210, 140]], np.float32), m, canvas_w,
            canvas_h)[0]
        ys, xs = np.nonzero(warped)
        if len(xs) == 0:
            continue
        # the pixels lie inside the transformed box (1 px for sampling)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] + 1
        assert ys.min() >= box[1] - 1 and ys.max() <= box[3] + 1
        # and touch its edges that are inside the canvas
        if 2 < box[0] and box[2] < canvas_w - 2:
            assert xs.min() <= box[0] + 2 and xs.max() >= box[2] - 3
    # the drawn parameters stay in DEIM's ranges: scale = |det|^0.5
    for _ in range(50):
        m = mosaic._random_affine(200, 100)
        scale = np.sqrt(abs(np.linalg.det(m[:, :2])))
        assert 0.5 - 1e-6 <= scale <= 1.5 + 1e-6
        angle = np.degrees(np.arctan2(-m[0, 1], m[0, 0]))
        assert abs(angle) <= 10 + 1e-6


def test_boxes_are_clipped_to_the_canvas():
    m = affine_matrix(100, 100, angle=0, scale=1, tx=80, ty=0)
    out = affine_boxes(np.array([[10, 10, 50, 50]], np.float32), m, 100, 100)
    np.testing.assert_allclose(out, [[90, 10, 100, 50]])


def test_transform_cache_and_flag():
    random.seed(0)
    mosaic = DEIMMosaic(prob=1.0, max_cached_images=4)
    res = mosaic(
        _sample(480, 640, 100, [[0, 0, 64, 48], [320, 240, 640, 480]], [1, 2]))
    assert res[MOSAIC_FLAG] is True
    # the cache held only this image: it fills all four cells
    assert res['img_shape'] == (640, 852) == res['img'].shape[:2]
    assert len(res['gt_bboxes']) == 8 and len(res['gt_ignore_flags']) == 8
    np.testing.assert_array_equal(res['gt_bboxes_labels'], [1, 2] * 4)
    assert (res['gt_bboxes'].numpy()[:, 2:] <= [852, 640]).all()
    for i in range(6):
        mosaic(_sample(100 + i, 200, i, [[1, 1, 20, 20]], [0]))
    assert len(mosaic.cache) == 4  # bounded, newest kept
    assert mosaic.cache[-1]['img'][0, 0, 0] == 5


def test_prob_zero_leaves_the_sample():
    mosaic = DEIMMosaic(prob=0.0)
    sample = _sample(50, 60, 7, [[1, 2, 30, 40]], [0])
    out = mosaic(dict(sample))
    assert MOSAIC_FLAG not in out and out['img'] is sample['img']
    with pytest.raises(ValueError, match='prob must be in'):
        DEIMMosaic(prob=2)


def test_skip_after_mosaic():
    expand = dict(
        type='Expand',
        mean=(0, 0, 0),
        to_rgb=False,
        ratio_range=(2, 2),
        prob=1.0)
    skip = SkipAfterMosaic([expand])
    plain = skip(_sample(50, 60, 7, [[1, 2, 30, 40]], [0]))
    assert plain['img'].shape[:2] == (100, 120)  # Expand ran
    flagged = _sample(50, 60, 7, [[1, 2, 30, 40]], [0])
    flagged[MOSAIC_FLAG] = True
    assert skip(flagged)['img'].shape[:2] == (50, 60)  # skipped


def _samples(counts):
    out = []
    for i, n in enumerate(counts):
        s = DetDataSample(metainfo=dict(img_shape=(8, 8)))
        s.gt_instances = InstanceData(
            bboxes=torch.arange(4 * n, dtype=torch.float32).reshape(n, 4) +
            100 * i,
            labels=torch.full((n, ), i, dtype=torch.long))
        out.append(s)
    return out


def test_batch_mixup_mixes_images_and_concatenates_targets():
    inputs = torch.rand(3, 3, 8, 8)
    samples = _samples([2, 1, 3])
    before = [s.gt_instances.clone() for s in samples]
    mixed, out = DEIMBatchMixUp.mix(inputs.clone(), samples, beta=0.47)
    # DEIM: images.roll(1) * (1 - beta) + images * beta
    ref = inputs.roll(shifts=1, dims=0) * (1 - 0.47) + inputs * 0.47
    torch.testing.assert_close(mixed, ref, rtol=0, atol=1e-6)
    for i, s in enumerate(out):
        prev = before[i - 1]  # image 0 gets the last one
        assert torch.equal(s.gt_instances.labels,
                           torch.cat([before[i].labels, prev.labels]))
        assert torch.equal(s.gt_instances.bboxes,
                           torch.cat([before[i].bboxes, prev.bboxes]))


def test_batch_mixup_probability_and_switch():
    random.seed(1)
    aug = DEIMBatchMixUp(prob=1.0)
    inputs = torch.rand(2, 3, 4, 4)
    same, _ = aug(inputs, _samples([1, 1]))
    assert same is inputs  # disabled until the policy hook enables it
    aug.enabled = True
    for _ in range(20):
        samples = _samples([1, 2])
        mixed, out = aug(inputs.clone(), samples)
        # recover beta from pixel 0 of image 0: beta in [0.45, 0.55]
        a, b = inputs[0].flatten()[0], inputs[1].flatten()[0]
        beta = float((mixed[0].flatten()[0] - b) / (a - b))
        assert 0.45 - 1e-4 <= beta <= 0.55 + 1e-4
        assert len(out[0].gt_instances) == 3 and len(out[1].gt_instances) == 3
    aug.prob = 0.0
    mixed, _ = aug(inputs, _samples([1, 1]))
    assert mixed is inputs


# ------------------------------------------------------------ policy hook
TINY_DEIM = """\
_base_ = {toy_cfg!r}
data_root = {data_root!r}
img = 64
model = dict(num_queries=10, eval_spatial_size=(img, img),
             dn_cfg=dict(num_denoising=10))
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='DEIMMosaic', output_size=32, prob=1.0),
    dict(type='RandomPhotometricDistort', p=0.5),
    dict(type='SkipAfterMosaic',
         transforms=[dict(type='RandomIoUCrop', p=0.8)]),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='Resize', scale=(img, img), keep_ratio=False, backend='pillow'),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=100)
default_hooks = dict(logger=dict(interval=100), checkpoint=dict(interval=100),
                     stop_aug=dict(policy_epochs=[1, 2, 3]))
"""


def test_policy_hook_switches_by_epoch(toy_coco, tmp_path):
    """A real 4-epoch run of the DEIM toy config with policy epochs
    [1, 2, 3]: per epoch, the pipeline, the MixUp switch and what the
    model received."""
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    cfg_file = tmp_path / 'tiny_deim.py'
    cfg_file.write_text(
        TINY_DEIM.format(
            toy_cfg=osp.join(ROOT, 'configs', 'deim_dfine', 'toy',
                             'deim_hgnetv2_n_toy.py'),
            data_root=toy_coco.rstrip('/') + '/'))
    cfg = Config.fromfile(str(cfg_file))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.visualizer.name = f'visualizer:{cfg.work_dir}'
    cfg.optim_wrapper.type = 'OptimWrapper'

    class Record(Hook):
        priority = 'LOWEST'

        def __init__(self):
            self.epochs = {}

        def before_train_epoch(self, runner):
            ds = runner.train_dataloader.dataset
            aug = runner.model.data_preprocessor.batch_augments[0]
            self.epochs[runner.epoch] = dict(
                pipeline=[type(t).__name__ for t in ds.pipeline.transforms],
                mixup=aug.enabled,
                boxes=[])

        def after_train_iter(self,
                             runner,
                             batch_idx,
                             data_batch=None,
                             outputs=None):
            self.epochs[runner.epoch]['boxes'].append(
                [len(s.gt_instances) for s in data_batch['data_samples']])

    record = Record()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(record)
    runner.train()
    ep = record.epochs
    assert sorted(ep) == [0, 1, 2, 3]
    strong = {'DEIMMosaic', 'RandomPhotometricDistort', 'SkipAfterMosaic'}
    assert not strong & set(ep[0]['pipeline']) and not ep[0]['mixup']
    assert strong <= set(ep[1]['pipeline']) and ep[1]['mixup']
    assert 'DEIMMosaic' not in ep[2]['pipeline'] and not ep[2]['mixup']
    assert {'RandomPhotometricDistort',
            'SkipAfterMosaic'} <= set(ep[2]['pipeline'])
    assert not strong & set(ep[3]['pipeline']) and not ep[3]['mixup']
    # Mosaic (prob 1) puts four images' boxes in each sample in epoch 1
    # (before MixUp doubles some): more boxes per sample than epoch 0
    mean = {e: np.mean(sum(v['boxes'], [])) for e, v in ep.items()}
    assert mean[1] > 2 * mean[0]
    assert mean[3] == pytest.approx(mean[0])
