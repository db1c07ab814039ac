"""DFINEBatchMultiScaleResize: official multi-scale sizes, nearest resize,
box/meta update."""
import random

import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import dfine_mmdet  # noqa: F401
from dfine_mmdet.models.data_preprocessors.batch_multiscale_resize import (
    DFINEBatchMultiScaleResize, generate_scales)


def _samples(n, size, boxes):
    out = []
    for _ in range(n):
        s = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                pad_shape=(size, size),
                batch_input_shape=(size, size)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32),
            labels=torch.zeros(len(boxes), dtype=torch.long))
        out.append(s)
    return out


def test_official_scales():
    assert generate_scales(640, 3) == [
        480, 512, 544, 576, 608, 640, 640, 640, 800, 768, 736, 704, 672
    ]
    assert generate_scales(640, 20).count(640) == 20
    assert len(generate_scales(640, 20)) == 30
    assert DFINEBatchMultiScaleResize(base_size_repeat=None).scales is None


def test_nearest_resize_and_box_update():
    aug = DFINEBatchMultiScaleResize(scales=[32])
    x = torch.arange(
        2 * 3 * 64 * 64, dtype=torch.float32).reshape(2, 3, 64, 64)
    samples = _samples(2, 64, [[8., 4., 40., 60.]])
    y, samples = aug(x, samples)
    assert y.shape == (2, 3, 32, 32)
    assert torch.equal(
        y, x[..., ::2, ::2])  # nearest, scale 1/2 picks even pixels
    for s in samples:
        assert s.gt_instances.bboxes.tolist() == [[4., 2., 20., 30.]]
        assert s.img_shape == (32, 32) and s.batch_input_shape == (32, 32)
        assert s.pad_shape == (32, 32)
    # normalised boxes (what the head uses) are unchanged, as in the official
    # collate
    assert (samples[0].gt_instances.bboxes /
            32).tolist() == [[0.125, 0.0625, 0.625, 0.9375]]


def test_disabled_and_draws_from_the_list():
    assert generate_scales(64, 1) == [32, 64,
                                      64]  # official formula, 32 px steps
    aug = DFINEBatchMultiScaleResize(base_size=128, base_size_repeat=1)
    assert aug.scales == [96, 128, 160]
    x = torch.rand(1, 3, 128, 128)
    random.seed(0)
    seen = set()
    for _ in range(30):
        y, _ = aug(x, _samples(1, 128, [[0., 0., 8., 8.]]))
        seen.add(y.shape[-1])
    assert seen == {96, 128, 160}
    aug.enabled = False
    y, s = aug(x, _samples(1, 128, [[0., 0., 8., 8.]]))
    assert y is x and s[0].img_shape == (128, 128)


def test_inside_det_data_preprocessor():
    init_default_scope('mmdet')
    pre = MODELS.build(
        dict(
            type='DetDataPreprocessor',
            mean=[0., 0., 0.],
            std=[255., 255., 255.],
            bgr_to_rgb=True,
            pad_size_divisor=32,
            batch_augments=[
                dict(type='DFINEBatchMultiScaleResize', scales=[96])
            ]))
    from mmdet.structures.bbox import HorizontalBoxes
    samples = []
    for _ in range(2):
        s = DetDataSample(
            metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))
        s.gt_instances = InstanceData(
            bboxes=HorizontalBoxes(torch.tensor([[0., 0., 32., 16.]])),
            labels=torch.tensor([1]))
        samples.append(s)
    data = dict(
        inputs=[torch.full((3, 64, 64), 255, dtype=torch.uint8)] * 2,
        data_samples=samples)
    out = pre(data, training=True)
    assert out['inputs'].shape == (2, 3, 96, 96)
    assert torch.allclose(out['inputs'], torch.ones(1))
    b = out['data_samples'][0].gt_instances.bboxes
    b = b.tensor if hasattr(b, 'tensor') else b
    assert b.tolist() == [[0., 0., 48., 24.]]
    assert out['data_samples'][0].batch_input_shape == (96, 96)
    # eval mode: no batch augments
    out = pre(
        dict(
            inputs=data['inputs'],
            data_samples=_samples(2, 64, [[0., 0., 8., 8.]])),
        training=False)
    assert out['inputs'].shape == (2, 3, 64, 64)
