"""HGNetV2 backbone: arch table, official keys, freezing, pretrained init.

Numerical parity of the backbone against the official fixtures runs in
``test_hybrid_encoder.py`` (one shared backbone+encoder forward per variant).
"""
import os.path as osp

import pytest
import torch
import torch.nn as nn

from dfine_mmdet.models.backbones.hgnetv2 import (FrozenBatchNorm2d, HGNetV2,
                                                  LearnableAffineBlock)

# D-FINE COCO variants -> backbone config (spec section 1.1) and parameter
# count (spec: backbone column; rounded to 0.01M there).
VARIANTS = {
    'n': (dict(arch='B0', use_lab=True, out_indices=(2, 3)), 1.85e6),
    's': (dict(arch='B0', use_lab=True, out_indices=(1, 2, 3)), 1.85e6),
    'm': (dict(arch='B2', use_lab=True, out_indices=(1, 2, 3)), 6.03e6),
    'l': (dict(
        arch='B4', out_indices=(1, 2, 3), frozen_stem=True,
        freeze_norm=True), 13.51e6),
    'x': (dict(
        arch='B5', out_indices=(1, 2, 3), frozen_stem=True,
        freeze_norm=True), 33.23e6),
}


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_official_key_layout(parity_dir, variant):
    """Keys/order/shapes equal the official ``backbone.*`` entries."""
    from official_random_weights import load_keys_spec
    cfg, n_params = VARIANTS[variant]
    model = HGNetV2(**cfg)
    spec = load_keys_spec(
        osp.join(parity_dir, f'dfine_{variant}_coco_keys.json'))
    official = [(k[len('backbone.'):], shape) for k, shape, _ in spec
                if k.startswith('backbone.')]
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == official
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - n_params) < 0.005e6, count


def test_key_examples_b0():
    """Spec section 2.4 key examples, independent of the fixtures."""
    sd = {
        k: tuple(v.shape)
        for k, v in HGNetV2(arch='B0', use_lab=True).state_dict().items()
    }
    assert sd['stem.stem1.conv.weight'] == (16, 3, 3, 3)
    assert sd['stem.stem1.lab.scale'] == (1, )
    assert sd['stages.2.blocks.0.layers.0.conv1.conv.weight'] == (64, 256, 1,
                                                                  1)
    assert sd['stages.2.blocks.0.layers.0.conv2.conv.weight'] == (64, 1, 5, 5)
    assert 'stages.2.blocks.0.layers.0.conv2.lab.scale' in sd
    assert not any(
        k.startswith('stages.2.blocks.0.layers.0.conv1.lab') for k in sd)
    assert sd['stages.1.downsample.conv.weight'] == (64, 1, 3, 3)
    assert not any(k.startswith('stages.1.downsample.lab') for k in sd)
    assert not any(k.startswith('stages.0.downsample') for k in sd)
    # aggregation: in + n*mid -> out/2 -> out
    assert sd['stages.1.blocks.0.aggregation.0.conv.weight'] == (128,
                                                                 64 + 3 * 32,
                                                                 1, 1)
    assert sd['stages.1.blocks.0.aggregation.1.conv.weight'] == (256, 128, 1,
                                                                 1)
    assert sd['stem.stem1.bn.num_batches_tracked'] == ()


@pytest.mark.parametrize('arch', sorted(HGNetV2.arch_settings))
def test_all_archs_forward_shapes(arch):
    """Every arch-table row builds and gives the table's channels at strides
    4..32.

    Runs on the ``meta`` device (shapes only, no compute); the numerics of the
    blocks are covered by the parity tests.
    """
    setting = HGNetV2.arch_settings[arch]
    with torch.device('meta'):
        model = HGNetV2(arch=arch, out_indices=(0, 1, 2, 3)).eval()
        outs = model(torch.empty(1, 3, 64, 96))
    assert isinstance(outs, tuple)
    expected = [(1, st[2], 64 // s, 96 // s)
                for st, s in zip(setting['stages'], (4, 8, 16, 32))]
    assert [tuple(o.shape) for o in outs] == expected
    assert model.out_channels == [st[2] for st in setting['stages']]
    assert model.stem.stem1.conv.out_channels == setting['stem'][1]
    assert model.stem.stem4.conv.out_channels == setting['stem'][2]
    assert [len(stage.blocks)
            for stage in model.stages] == [st[3] for st in setting['stages']]
    # no LearnableAffineBlock unless use_lab
    assert not any(
        isinstance(m, LearnableAffineBlock) for m in model.modules())


@pytest.mark.parametrize('hw', [(480, 640), (512, 384), (100, 70)])
def test_rectangular_input(hw):
    model = HGNetV2(arch='B0', use_lab=True, out_indices=(1, 2, 3)).eval()
    h, w = hw
    with torch.no_grad():
        outs = model(torch.rand(1, 3, h, w))
    expected = [(1, c, -(-h // s), -(-w // s))
                for c, s in ((256, 8), (512, 16), (1024, 32))]
    assert [tuple(o.shape) for o in outs] == expected


def test_frozen_batch_norm_matches_eval_batch_norm():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    frozen = FrozenBatchNorm2d(6)
    # an ordinary BN state_dict (with num_batches_tracked) loads strictly
    frozen.load_state_dict(bn.state_dict(), strict=True)
    assert 'num_batches_tracked' not in frozen.state_dict()
    assert not list(frozen.parameters())
    x = torch.randn(2, 6, 5, 4)
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-5, atol=1e-6)
    # formula of the official module
    scale = frozen.weight * (frozen.running_var + 1e-5).rsqrt()
    ref = x * scale[:, None, None] + (
        frozen.bias - frozen.running_mean * scale)[:, None, None]
    torch.testing.assert_close(frozen(x), ref, rtol=0, atol=0)


def test_freezing_options():
    model = HGNetV2(arch='B0', frozen_stem=True, freeze_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(
        k.endswith('num_batches_tracked') for k in model.state_dict())
    assert all(not p.requires_grad for p in model.stem.parameters())
    assert all(p.requires_grad for p in model.stages.parameters())

    model = HGNetV2(arch='B0', frozen_stages=1)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(
        n.startswith(('stem.', 'stages.0.', 'stages.1.')) for n in frozen)
    assert all(p.requires_grad for p in model.stages[2].parameters())

    model = HGNetV2(arch='B0', norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.training and model.stages[0].training

    model = HGNetV2(arch='B0').train()
    assert all(m.training for m in model.modules())


def test_bad_arguments():
    with pytest.raises(KeyError, match='B9'):
        HGNetV2(arch='B9')
    with pytest.raises(ValueError, match='out_indices'):
        HGNetV2(arch='B0', out_indices=(1, 4))


@pytest.mark.parametrize('freeze_norm', [False, True])
def test_pretrained_loading(tmp_path, freeze_norm):
    """An official-style file (no ``backbone.`` prefix) loads via init_cfg."""
    torch.manual_seed(0)
    src = HGNetV2(arch='B0', use_lab=True)
    with torch.no_grad():
        for t in src.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t).abs() + 0.1)
    path = str(tmp_path / 'PPHGNetV2_B0_stage1.pth')
    # official files are plain state_dicts of the non-frozen network
    torch.save(src.state_dict(), path)

    model = HGNetV2(
        arch='B0',
        use_lab=True,
        freeze_norm=freeze_norm,
        init_cfg=dict(type='Pretrained', checkpoint=path))
    before = model.stem.stem1.conv.weight.clone()
    model.init_weights()
    ours = model.state_dict()
    ref = src.state_dict()
    assert not torch.equal(before, ours['stem.stem1.conv.weight'])
    for key, value in ours.items():
        torch.testing.assert_close(value, ref[key], rtol=0, atol=0, msg=key)
    assert freeze_norm == ('stem.stem1.bn.num_batches_tracked' not in ours)


def test_pretrained_missing_file(tmp_path):
    path = str(tmp_path / 'weights' / 'PPHGNetV2_B4_stage1.pth')
    model = HGNetV2(
        arch='B4', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(FileNotFoundError, match='PPHGNetV2_B4_stage1.pth'):
        model.init_weights()


def test_registered():
    from mmdet.registry import MODELS

    import dfine_mmdet  # noqa: F401
    model = MODELS.build(dict(type='HGNetV2', arch='B0', out_indices=(3, )))
    assert isinstance(model, HGNetV2)
    assert model.out_channels == [1024] and model.out_strides == [32]
