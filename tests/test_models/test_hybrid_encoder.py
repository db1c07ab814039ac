"""HybridEncoder (AIFI + GELAN CCFF): official keys, parity, any input size.

The parity tests regenerate the official random weights of each COCO variant
with ``official_random_weights.py``, load the ``backbone.*`` / ``encoder.*``
entries (prefix removed) into HGNetV2 / HybridEncoder and compare the backbone
outputs, the AIFI output and the encoder outputs with the summaries stored in
``dfine_{v}_coco.npz`` (tolerances of the parity README, section 3). One
forward per variant is shared by the tests of that variant.
"""
import os.path as osp

import numpy as np
import pytest
import torch

from dfine_mmdet.models.backbones.hgnetv2 import HGNetV2
from dfine_mmdet.models.necks.hybrid_encoder import HybridEncoder

# Spec section 1.1 (resolved official COCO configs).
# yapf: disable
VARIANTS = {
    'n': (dict(arch='B0', use_lab=True, out_indices=(2, 3)),
          dict(in_channels=(512, 1024), feat_strides=(16, 32), embed_dims=128,
               use_encoder_idx=(1, ), feedforward_channels=512, expansion=0.34,
               depth_mult=0.5)),
    's': (dict(arch='B0', use_lab=True, out_indices=(1, 2, 3)),
          dict(in_channels=(256, 512, 1024), embed_dims=256,
               feedforward_channels=1024, expansion=0.5, depth_mult=0.34)),
    'm': (dict(arch='B2', use_lab=True, out_indices=(1, 2, 3)),
          dict(in_channels=(384, 768, 1536), embed_dims=256,
               feedforward_channels=1024, expansion=1.0, depth_mult=0.67)),
    'l': (dict(arch='B4', out_indices=(1, 2, 3), frozen_stem=True,
               freeze_norm=True),
          dict(in_channels=(512, 1024, 2048), embed_dims=256,
               feedforward_channels=1024, expansion=1.0, depth_mult=1.0)),
    'x': (dict(arch='B5', out_indices=(1, 2, 3), frozen_stem=True,
               freeze_norm=True),
          dict(in_channels=(512, 1024, 2048), embed_dims=384,
               feedforward_channels=2048, expansion=1.0, depth_mult=1.0)),
}
# Spec section 1.1: encoder parameter counts (rounded to 0.01M there).
ENCODER_PARAMS = {'n': 0.70e6, 's': 4.02e6, 'm': 7.80e6, 'l': 9.34e6,
                  'x': 20.70e6}
# yapf: enable


def official_entries(parity_dir, variant, prefix):
    """[(key without prefix, shape)] of the official entries under prefix."""
    from official_random_weights import load_keys_spec
    spec = load_keys_spec(
        osp.join(parity_dir, f'dfine_{variant}_coco_keys.json'))
    return [(k[len(prefix):], shape) for k, shape, _ in spec
            if k.startswith(prefix)]


def official_weights(parity_dir, variant):
    """(fixture npz, official random state_dict) of one variant."""
    from official_random_weights import (load_fixed_buffers, load_keys_spec,
                                         make_state_dict)
    fx = np.load(osp.join(parity_dir, f'dfine_{variant}_coco.npz'))
    sd = make_state_dict(
        load_keys_spec(
            osp.join(parity_dir, f'dfine_{variant}_coco_keys.json')),
        seed=int(fx['meta/weight_seed']),
        fixed=load_fixed_buffers(fx),
        gain=float(fx['meta/weight_gain']))
    return fx, sd


def sub_state_dict(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def compare_summary(tensor, fx, name):
    """Check ``tensor`` against ``sum/<name>/*``; return the differences."""
    p = f'sum/{name}/'
    assert list(tensor.shape) == fx[p + 'shape'].tolist(), name
    t64 = tensor.detach().double()
    flat = tensor.detach().flatten()
    abs_sum, sq_sum = float(fx[p + 'abs_sum']), float(fx[p + 'sq_sum'])
    diffs = dict(
        abs_sum_rel=abs(t64.abs().sum().item() - abs_sum) / abs_sum,
        sq_sum_rel=abs((t64**2).sum().item() - sq_sum) / sq_sum,
        sum_rel=abs(t64.sum().item() - float(fx[p + 'sum'])) / abs_sum,
        first=(flat[:32] -
               torch.from_numpy(fx[p + 'first'])).abs().max().item(),
        sample=(flat[torch.from_numpy(fx[p + 'sample_index'])] -
                torch.from_numpy(fx[p + 'sample_values'])).abs().max().item())
    assert diffs['abs_sum_rel'] < 1e-5, (name, diffs)
    assert diffs['sq_sum_rel'] < 1e-5, (name, diffs)
    assert diffs['sum_rel'] < 1e-5, (name, diffs)
    assert diffs['first'] < 1e-4, (name, diffs)
    assert diffs['sample'] < 1e-4, (name, diffs)
    return diffs


@pytest.fixture(scope='module', params=list(VARIANTS))
def parity_run(request, parity_dir):
    """Backbone + encoder of a variant, official random weights, run once."""
    variant = request.param
    fx, sd = official_weights(parity_dir, variant)
    bb_cfg, enc_cfg = VARIANTS[variant]
    backbone = HGNetV2(**bb_cfg)
    encoder = HybridEncoder(**enc_cfg)
    backbone.load_state_dict(sub_state_dict(sd, 'backbone.'), strict=True)
    encoder.load_state_dict(sub_state_dict(sd, 'encoder.'), strict=True)
    backbone.eval()
    encoder.eval()

    captured = {}
    hook = encoder.encoder[0].register_forward_hook(
        lambda mod, args, out: captured.__setitem__('aifi', out))
    images = np.load(osp.join(parity_dir, 'parity_input.npz'))['images_uint8']
    x = torch.from_numpy(images).float() / 255
    with torch.no_grad():
        feats = backbone(x)
        outs = encoder(feats)
    hook.remove()
    return dict(
        variant=variant, fx=fx, feats=feats, outs=outs, aifi=captured['aifi'])


def test_backbone_parity(parity_run):
    fx = parity_run['fx']
    for i, feat in enumerate(parity_run['feats']):
        compare_summary(feat, fx, f'backbone.{i}')
    assert f'sum/backbone.{len(parity_run["feats"])}/shape' not in fx.files


def test_aifi_parity(parity_run):
    # [B, HW, hd] output of the transformer encoder on the stride-32 map
    compare_summary(parity_run['aifi'], parity_run['fx'], 'encoder_aifi')


def test_encoder_parity(parity_run):
    fx, outs = parity_run['fx'], parity_run['outs']
    assert isinstance(outs, tuple)
    for i, out in enumerate(outs):
        compare_summary(out, fx, f'encoder.{i}')
    assert f'sum/encoder.{len(outs)}/shape' not in fx.files


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_official_key_layout(parity_dir, variant):
    """Keys/order/shapes equal the official ``encoder.*`` entries."""
    encoder = HybridEncoder(**VARIANTS[variant][1])
    ours = [(k, tuple(v.shape)) for k, v in encoder.state_dict().items()]
    assert ours == official_entries(parity_dir, variant, 'encoder.')
    n_params = sum(p.numel() for p in encoder.parameters())
    assert abs(n_params - ENCODER_PARAMS[variant]) < 0.005e6, n_params


def test_official_key_examples():
    """Key examples of spec section 3 (N layout), without the fixtures."""
    encoder = HybridEncoder(**VARIANTS['n'][1])
    shapes = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert shapes['fpn_blocks.0.cv1.conv.weight'] == (256, 256, 1, 1)
    assert shapes['fpn_blocks.0.cv2.0.conv1.conv.weight'] == (21, 128, 1, 1)
    assert shapes['fpn_blocks.0.cv2.0.bottlenecks.1.conv1.conv.weight'] == (21,
                                                                            21,
                                                                            3,
                                                                            3)
    assert shapes['fpn_blocks.0.cv2.0.bottlenecks.1.conv2.conv.weight'] == (21,
                                                                            21,
                                                                            1,
                                                                            1)
    assert shapes['fpn_blocks.0.cv2.1.conv.weight'] == (21, 21, 3, 3)
    assert shapes['fpn_blocks.0.cv4.conv.weight'] == (128, 298, 1, 1)
    assert shapes['encoder.0.layers.0.self_attn.in_proj_weight'] == (384, 128)
    assert shapes['lateral_convs.0.conv.weight'] == (128, 128, 1, 1)
    assert 'downsample_convs.0.0.cv2.norm.num_batches_tracked' in shapes
    assert not any('pos_embed' in k for k in shapes)


@pytest.mark.parametrize('hw', [(480, 640), (512, 384), (500, 372)])
def test_rectangular_and_odd_inputs(hw):
    """Any input size runs in eval (no 640-only buffers); output shapes follow
    the input.

    The maps have the sizes HGNetV2 gives for an ``h x w`` image (ceil(h/s) x
    ceil(w/s)); 500x372 is not divisible by 32, so the FPN must upsample 16x12
    to 32x24 and 32x24 to 63x47.
    """
    torch.manual_seed(0)
    encoder = HybridEncoder(
        in_channels=(16, 32, 64),
        embed_dims=32,
        num_heads=4,
        feedforward_channels=64,
        expansion=0.5,
        depth_mult=0.34).eval()
    h, w = hw
    sizes = [(-(-h // s), -(-w // s)) for s in (8, 16, 32)]  # ceil
    feats = tuple(
        torch.randn(1, c, *hw_s) for c, hw_s in zip((16, 32, 64), sizes))
    with torch.no_grad():
        outs = encoder(feats)
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(1, 32) + s for s in sizes]
    assert all(torch.isfinite(o).all() for o in outs)
    # the position embedding was built for the actual stride-32 map
    assert (sizes[2][0], sizes[2][1], 32, torch.device('cpu'),
            torch.float32) in encoder.pos_embed._cache


def test_backbone_and_encoder_on_rectangular_image():
    torch.manual_seed(0)
    backbone = HGNetV2(arch='B0', use_lab=True, out_indices=(2, 3)).eval()
    encoder = HybridEncoder(**VARIANTS['n'][1]).eval()
    with torch.no_grad():
        outs = encoder(backbone(torch.rand(1, 3, 320, 224)))
    assert [tuple(o.shape) for o in outs] == [(1, 128, 20, 14),
                                              (1, 128, 10, 7)]


def test_rectangular_aifi_uses_official_pos_embed():
    """AIFI on a non-square map uses the quirky embedding of its (H, W)."""
    from dfine_mmdet.models.layers.aifi import \
        build_2d_sincos_position_embedding
    torch.manual_seed(0)
    encoder = HybridEncoder(
        in_channels=(8, 16),
        feat_strides=(16, 32),
        embed_dims=16,
        use_encoder_idx=(1, ),
        num_heads=2,
        feedforward_channels=32).eval()
    feat = torch.randn(2, 16, 3, 5)
    src = feat.flatten(2).permute(0, 2, 1)
    pos = build_2d_sincos_position_embedding(3, 5, 16)
    expected = encoder.encoder[0](src, pos_embed=pos)
    with torch.no_grad():
        got = encoder.forward_aifi(feat, 0)
    torch.testing.assert_close(
        got, expected.permute(0, 2, 1).reshape(2, 16, 3, 5), rtol=0, atol=0)


def test_training_backward_reaches_every_parameter():
    torch.manual_seed(0)
    encoder = HybridEncoder(
        in_channels=(8, 16, 32),
        embed_dims=16,
        num_heads=2,
        feedforward_channels=32,
        expansion=0.5,
        depth_mult=0.34).train()
    feats = (torch.randn(2, 8, 16,
                         12), torch.randn(2, 16, 8,
                                          6), torch.randn(2, 32, 4, 3))
    with torch.inference_mode():  # pos-embed cache filled in inference mode
        encoder.eval()(feats)
    encoder.train()
    outs = encoder(feats)
    sum(o.square().mean() for o in outs).backward()
    no_grad = [n for n, p in encoder.named_parameters() if p.grad is None]
    assert not no_grad
    assert all(p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_bad_arguments():
    with pytest.raises(ValueError, match='feat_strides'):
        HybridEncoder(in_channels=(8, 16), feat_strides=(8, 16, 32))
    with pytest.raises(ValueError, match='use_encoder_idx'):
        HybridEncoder(
            in_channels=(8, 16), feat_strides=(16, 32), use_encoder_idx=(2, ))
    encoder = HybridEncoder(
        in_channels=(8, 16),
        feat_strides=(16, 32),
        embed_dims=16,
        use_encoder_idx=(1, ),
        num_heads=2)
    with pytest.raises(ValueError, match='expects 2 feature maps'):
        encoder((torch.randn(1, 8, 4, 4), ))


def test_registered():
    from mmdet.registry import MODELS

    import dfine_mmdet  # noqa: F401
    neck = MODELS.build(
        dict(
            type='HybridEncoder',
            in_channels=(8, 16),
            feat_strides=(16, 32),
            embed_dims=16,
            use_encoder_idx=(1, ),
            num_heads=2))
    assert isinstance(neck, HybridEncoder)
