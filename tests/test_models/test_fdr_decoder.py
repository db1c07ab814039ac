"""Decoder building blocks: deformable attention, Gate, LQE, FDR loop.

Tiny shapes; each test checks numbers against a direct re-computation."""
import pytest
import torch
import torch.nn.functional as F

# yapf: disable
from dfine_mmdet.models.layers.fdr_decoder import (
    DFINETransformerDecoder, DFINETransformerDecoderLayer)
# yapf: enable
from dfine_mmdet.models.layers.gate import Gate
from dfine_mmdet.models.layers.lqe import LQE
from dfine_mmdet.models.layers.ms_deform_attn import MSDeformableAttention
from dfine_mmdet.models.task_modules.coders.fdr_coder import (
    distance2bbox, fdr_integral, weighting_function)


def _randomize(module, std=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def _bilinear(img, x, y):
    """Bilinear sample of img [C, H, W] at pixel coords (align_corners=False
    convention: pixel centres at integers), zero outside."""
    c, h, w = img.shape
    x0, y0 = int(torch.floor(x)), int(torch.floor(y))
    out = torch.zeros(c)
    for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        wx = 1 - abs(float(x) - xi)
        wy = 1 - abs(float(y) - yi)
        if 0 <= xi < w and 0 <= yi < h:
            out += wx * wy * img[:, yi, xi]
    return out


@torch.no_grad()
def test_deformable_attention_matches_naive_sampling():
    shapes = [(4, 6), (2, 3)]
    attn = _randomize(MSDeformableAttention(8, 2, 2, [2, 3]))
    assert torch.allclose(attn.num_points_scale,
                          torch.tensor([1 / 2] * 2 + [1 / 3] * 3))
    bs, nq = 2, 3
    g = torch.Generator().manual_seed(1)
    query = torch.randn(bs, nq, 8, generator=g)
    ref = torch.rand(bs, nq, 1, 4, generator=g) * 0.6 + 0.2
    value = torch.randn(bs, sum(h * w for h, w in shapes), 8, generator=g)
    out = attn(query, ref, value, shapes)
    assert out.shape == (bs, nq, 8)

    # naive: per head, per point, bilinear sampling at loc * size - 0.5
    offsets = attn.sampling_offsets(query).reshape(bs, nq, 2, 5, 2)
    logits = attn.attention_weights(query).reshape(bs, nq, 2, 5)
    weights = logits.softmax(-1)  # joint over the 5 points of both levels
    level_of_point = [0, 0, 1, 1, 1]
    start = [0, 4 * 6]
    for b in range(bs):
        for q in range(nq):
            for m in range(2):
                acc = torch.zeros(4)
                for p in range(5):
                    lvl = level_of_point[p]
                    h, w = shapes[lvl]
                    n_l = 2 if lvl == 0 else 3
                    loc = ref[b, q, 0, :2] + offsets[b, q, m, p] / n_l * \
                        ref[b, q, 0, 2:] * 0.5
                    tokens = value[b, start[lvl]:start[lvl] + h * w,
                                   m * 4:(m + 1) * 4]
                    img = tokens.T.reshape(4, h, w)
                    acc += weights[b, q, m, p] * _bilinear(
                        img, loc[0] * w - 0.5, loc[1] * h - 0.5)
                torch.testing.assert_close(
                    out[b, q, m * 4:(m + 1) * 4], acc, atol=1e-5, rtol=1e-5)


def test_deformable_attention_init_offsets():
    attn = MSDeformableAttention(16, 8, 3, [3, 6, 3])
    bias = attn.sampling_offsets.bias.reshape(8, 12, 2)
    # head 0 points along +x with magnitudes 1..n_l per level
    torch.testing.assert_close(
        bias[0, :, 0], torch.tensor([1., 2, 3, 1, 2, 3, 4, 5, 6, 1, 2, 3]))
    assert torch.all(bias[0, :, 1].abs() < 1e-6)
    assert torch.all(attn.attention_weights.weight == 0)


def test_gate_init_is_even_mix():
    gate = Gate(6)
    x1, x2 = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    torch.testing.assert_close(
        gate(x1, x2), F.layer_norm(0.5 * x1 + 0.5 * x2, (6, )))
    _randomize(gate)
    g = torch.sigmoid(gate.gate(torch.cat([x1, x2], -1)))
    expected = gate.norm(g[..., :6] * x1 + g[..., 6:] * x2)
    torch.testing.assert_close(gate(x1, x2), expected)


def test_lqe_adds_quality_of_topk_statistics():
    lqe = _randomize(LQE(k=4, hidden_dim=8, num_layers=2, reg_max=32))
    corners = torch.randn(2, 3, 132)
    scores = torch.randn(2, 3, 5)
    prob = corners.reshape(2, 3, 4, 33).softmax(-1)
    top = prob.sort(-1, descending=True).values[..., :4]
    stat = torch.cat([top, top.mean(-1, keepdim=True)], -1).reshape(2, 3, 20)
    l0, l1 = lqe.reg_conf.layers
    quality = l1(torch.relu(l0(stat)))
    torch.testing.assert_close(lqe(scores, corners), scores + quality)
    assert torch.all(LQE(32)(scores, corners) == scores)  # zero init


def _tiny_decoder(num_layers=3, eval_idx=-1):
    layer_cfg = dict(
        embed_dims=16,
        num_heads=2,
        feedforward_channels=32,
        num_levels=2,
        num_points=[2, 2])
    dec = _randomize(
        DFINETransformerDecoder(
            num_layers,
            layer_cfg,
            bbox_coder=dict(type='FDRBBoxCoder', reg_max=8, reg_scale=4.0),
            eval_idx=eval_idx),
        std=0.2)
    dec.up.fill_(0.5)
    dec.reg_scale.fill_(4.0)
    reg = torch.nn.ModuleList(
        torch.nn.Linear(16, 4 * 9) for _ in range(num_layers))
    pre = torch.nn.Linear(16, 4)
    _randomize(reg, 0.2, seed=3)
    _randomize(pre, 0.2, seed=4)
    return dec, reg, pre


def _decoder_inputs(bs=2, nq=5):
    g = torch.Generator().manual_seed(7)
    shapes = [(4, 4), (2, 2)]
    return dict(
        query=torch.randn(bs, nq, 16, generator=g),
        ref_unact=torch.randn(bs, nq, 4, generator=g),
        memory=torch.randn(bs, 20, 16, generator=g),
        spatial_shapes=shapes)


def test_fdr_loop_recurrence():
    """Fixed reference after layer 0, residual corners, head input
    out_i + sg(out_{i-1}), boxes = distance2bbox(ref_init, Integral)."""
    dec, reg, pre = _tiny_decoder()
    dec.train()
    inputs = _decoder_inputs()
    out = dec(**inputs, reg_branches=reg, pre_reg_branch=pre)
    hs, corners, boxes = out['hidden_states'], out['pred_corners'], \
        out['pred_boxes']
    assert hs.shape == (3, 2, 5, 16) and corners.shape == (3, 2, 5, 36)

    ref0 = inputs['ref_unact'].sigmoid()
    logit0 = torch.log(ref0.clamp(min=1e-5) / (1 - ref0).clamp(min=1e-5))
    torch.testing.assert_close(out['pre_boxes'],
                               torch.sigmoid(pre(hs[0]) + logit0))
    assert not out['ref_points'].requires_grad
    assert out['pre_boxes'].requires_grad
    torch.testing.assert_close(out['ref_points'], out['pre_boxes'].detach())

    project = weighting_function(8, torch.tensor([0.5]), 4.0)
    torch.testing.assert_close(corners[0], reg[0](hs[0]))
    for i in (1, 2):
        torch.testing.assert_close(
            corners[i] - corners[i - 1],
            reg[i](hs[i] + hs[i - 1]),
            atol=1e-5,
            rtol=1e-5)
    for i in range(3):
        expected = distance2bbox(out['ref_points'],
                                 fdr_integral(corners[i], project), 4.0)
        torch.testing.assert_close(boxes[i], expected)
    # gradients of layer i+1's corners reach layer i's corners (residual)
    corners[2].sum().backward()
    assert all(p.grad is not None for p in reg[0].parameters())


@pytest.mark.parametrize('eval_idx,expected', [(-1, 3), (1, 2), (0, 1)])
def test_eval_stops_after_eval_idx(eval_idx, expected):
    dec, reg, pre = _tiny_decoder(eval_idx=eval_idx)
    inputs = _decoder_inputs()
    dec.train()
    full = dec(**inputs, reg_branches=reg, pre_reg_branch=pre)
    dec.eval()
    out = dec(**inputs, reg_branches=reg, pre_reg_branch=pre)
    assert out['pred_boxes'].shape[0] == expected
    torch.testing.assert_close(out['pred_boxes'],
                               full['pred_boxes'][:expected])


def test_denoising_mask_blocks_attention():
    """A blocked query pair cannot influence each other in self-attention."""
    layer = _randomize(
        DFINETransformerDecoderLayer(16, 2, 32, num_levels=1, num_points=2))
    g = torch.Generator().manual_seed(0)
    query = torch.randn(1, 4, 16, generator=g)
    ref = torch.rand(1, 4, 1, 4, generator=g) * 0.5 + 0.25
    value = layer.cross_attn.split_value(
        torch.randn(1, 9, 16, generator=g), [(3, 3)])
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[2:, :2] = True  # queries 2,3 cannot see 0,1
    out1 = layer(query, ref, value, [(3, 3)], mask)
    query2 = query.clone()
    query2[:, :2] += 1.0
    out2 = layer(query2, ref, value, [(3, 3)], mask)
    torch.testing.assert_close(out1[:, 2:], out2[:, 2:])
    assert not torch.allclose(out1[:, :2], out2[:, :2])


def test_loaded_buffers_are_written_into_the_coder():
    """The decoder's ``up`` / ``reg_scale`` buffers are the checkpoint form
    of the head's coder: a loaded checkpoint's values go into the coder, so
    the decoder (buffers) and the loss (coder) use the same W(n)."""
    dec, _, _ = _tiny_decoder()
    coder = dec.bbox_coder
    assert torch.equal(coder.project(), dec.project())
    sd = dec.state_dict()
    sd['up'] = torch.tensor([0.25])
    sd['reg_scale'] = torch.tensor([8])
    dec.load_state_dict(sd)
    assert (coder.up, coder.reg_scale) == (0.25, 8)
    assert torch.equal(coder.project(), dec.project())
    ref = torch.tensor([[0.5, 0.5, 0.2, 0.3]])
    gt = torch.tensor([[0.35, 0.3, 0.62, 0.7]])
    for ours, buffers in zip(
            coder.encode(ref, gt),
            coder.encode(ref, gt, up=dec.up, reg_scale=dec.reg_scale)):
        assert torch.equal(ours, buffers)
