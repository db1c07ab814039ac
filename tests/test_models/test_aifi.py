"""AIFI encoder layer and the official 2-D sin-cos position embedding."""
import math

import pytest
import torch
import torch.nn.functional as F

from dfine_mmdet.models.layers.aifi import (AIFIEncoder, AIFIEncoderLayer,
                                            SinCos2DPositionEmbedding,
                                            build_2d_sincos_position_embedding)


def reference_pos_embed(h, w, dim, temperature=10000.):
    """Spec section 3 formula in plain Python: a = i // h, b = i % h."""
    pos_dim = dim // 4
    omega = [1. / temperature**(k / pos_dim) for k in range(pos_dim)]
    rows = []
    for i in range(h * w):
        a, b = i // h, i % h
        rows.append([math.sin(a * o)
                     for o in omega] + [math.cos(a * o) for o in omega] +
                    [math.sin(b * o)
                     for o in omega] + [math.cos(b * o) for o in omega])
    return torch.tensor(rows, dtype=torch.float64)[None]


@pytest.mark.parametrize('hw', [(4, 4), (3, 5), (5, 3), (1, 7), (15, 20)])
def test_pos_embed_matches_spec_formula(hw):
    h, w = hw
    pos = build_2d_sincos_position_embedding(h, w, 16)
    assert pos.shape == (1, h * w, 16) and pos.dtype == torch.float32
    torch.testing.assert_close(
        pos.double(), reference_pos_embed(h, w, 16), rtol=0, atol=1e-5)


def test_pos_embed_quirk_on_non_square_map():
    """For a 2x3 map token 2 (y=0, x=2) gets (a, b) = (1, 0), not (0, 2)."""
    pos = build_2d_sincos_position_embedding(2, 3, 8)[0]
    # pos_dim 2, omega = (1, 1/100): [sin a, sin a/100, cos a, cos a/100, sin
    # b, ...]
    om = torch.tensor([1.0, 0.01])

    def emb(a, b):
        return torch.cat([(a * om).sin(), (a * om).cos(), (b * om).sin(),
                          (b * om).cos()])

    torch.testing.assert_close(pos[2], emb(1., 0.), rtol=0, atol=1e-6)
    assert not torch.allclose(pos[2], emb(0., 2.), atol=1e-2)
    torch.testing.assert_close(pos[5], emb(2., 1.), rtol=0, atol=1e-6)
    # square maps: a = row, b = column
    pos = build_2d_sincos_position_embedding(3, 3, 8)[0]
    torch.testing.assert_close(pos[5], emb(1., 2.), rtol=0, atol=1e-6)


def test_pos_embed_cache():
    module = SinCos2DPositionEmbedding(16)
    a = module(3, 5)
    assert module(3, 5) is a
    b = module(5, 3)
    assert b is not a and b.shape == a.shape and not torch.equal(a, b)
    c = module(3, 5, dtype=torch.float64)
    assert c.dtype == torch.float64
    torch.testing.assert_close(c.float(), a, rtol=0, atol=0)
    assert len(module._cache) == 3
    assert not module.state_dict()
    with pytest.raises(ValueError, match='divisible by 4'):
        SinCos2DPositionEmbedding(10)


def test_pos_embed_built_in_inference_mode_usable_for_training():
    module = SinCos2DPositionEmbedding(8)
    with torch.inference_mode():
        pos = module(2, 2)
    assert not pos.is_inference()
    x = torch.randn(1, 4, 8, requires_grad=True)
    (x * module(2, 2)).sum().backward()
    torch.testing.assert_close(x.grad, pos)


def reference_layer(layer, src, pos):
    """Post-norm encoder layer written out with explicit ops."""
    b, n, d = src.shape
    heads = layer.self_attn.num_heads
    w_q, w_k, w_v = layer.self_attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = layer.self_attn.in_proj_bias.chunk(3)
    qk_in = src + pos
    q = (qk_in @ w_q.T + b_q).reshape(b, n, heads, -1).transpose(1, 2)
    k = (qk_in @ w_k.T + b_k).reshape(b, n, heads, -1).transpose(1, 2)
    v = (src @ w_v.T + b_v).reshape(b, n, heads, -1).transpose(1, 2)
    att = (q @ k.transpose(-1, -2) / math.sqrt(d // heads)).softmax(-1)
    att = (att @ v).transpose(1, 2).reshape(b, n, d)
    out_proj = layer.self_attn.out_proj
    att = att @ out_proj.weight.T + out_proj.bias
    x = F.layer_norm(src + att, (d, ), layer.norm1.weight, layer.norm1.bias)
    ffn = F.gelu(x @ layer.linear1.weight.T + layer.linear1.bias)
    ffn = ffn @ layer.linear2.weight.T + layer.linear2.bias
    return F.layer_norm(x + ffn, (d, ), layer.norm2.weight, layer.norm2.bias)


def test_aifi_layer_matches_explicit_computation():
    torch.manual_seed(0)
    layer = AIFIEncoderLayer(16, 4, dim_feedforward=32).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    src = torch.randn(2, 6, 16)
    pos = build_2d_sincos_position_embedding(2, 3, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            layer(src, pos_embed=pos),
            reference_layer(layer, src, pos),
            rtol=1e-5,
            atol=1e-5)
    keys = set(layer.state_dict())
    assert {
        'self_attn.in_proj_weight', 'self_attn.in_proj_bias',
        'self_attn.out_proj.weight', 'self_attn.out_proj.bias',
        'linear1.weight', 'linear2.bias', 'norm1.weight', 'norm2.bias'
    } <= keys


def test_aifi_encoder_stacks_layers():
    torch.manual_seed(0)
    encoder = AIFIEncoder(2, d_model=8, nhead=2, dim_feedforward=16).eval()
    assert [k for k in encoder.state_dict()
            if k.endswith('in_proj_weight')] == [
                'layers.0.self_attn.in_proj_weight',
                'layers.1.self_attn.in_proj_weight'
            ]
    src, pos = torch.randn(1, 4,
                           8), build_2d_sincos_position_embedding(2, 2, 8)
    with torch.no_grad():
        expected = encoder.layers[1](
            encoder.layers[0](src, pos_embed=pos), pos_embed=pos)
        torch.testing.assert_close(
            encoder(src, pos_embed=pos), expected, rtol=0, atol=0)


def test_aifi_training_attention_equals_inference_attention():
    """Training runs the fused SDPA attention (need_weights=False),
    inference the official explicit one: same function, summation order
    only (outputs and input gradients within 1e-5)."""
    torch.manual_seed(0)
    layer = AIFIEncoderLayer(d_model=64, nhead=8, dim_feedforward=128)
    src = torch.randn(2, 50, 64)
    pos = torch.randn(1, 50, 64)
    grads = []
    outs = []
    for training in (True, False):
        layer.train(training)
        x = src.clone().requires_grad_(True)
        out = layer(x, pos_embed=pos)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-5)
