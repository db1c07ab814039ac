"""FDR coder: W(n), integral, distance2bbox / bbox2distance (paper Eq. 2-6)."""
import os.path as osp

import numpy as np
import pytest
import torch

from dfine_mmdet.models.task_modules.coders.fdr_coder import (
    FDRBBoxCoder, bbox2distance, distance2bbox, fdr_integral, translate_gt,
    weighting_function)


def _w_formula(reg_max, a, c):
    """W(n) written directly from paper Eq. 4 in float64."""
    step = (a * c + 1)**(2 / (reg_max - 2))
    half = reg_max // 2
    left = [1 - step**k for k in range(half - 1, 0, -1)]
    right = [step**k - 1 for k in range(1, half)]
    return np.array([-2 * a * c] + left + [0.0] + right + [2 * a * c])


@pytest.mark.parametrize('reg_scale', [4, 8])
def test_weighting_function_matches_formula(reg_scale):
    up = torch.tensor([0.5])
    w = weighting_function(32, up, torch.tensor([reg_scale]))
    assert w.shape == (33, ) and w.dtype == torch.float32
    np.testing.assert_allclose(
        w.numpy(), _w_formula(32, 0.5, reg_scale), atol=2e-6)
    # symmetric, monotonic, centred
    assert torch.all(w[1:] > w[:-1])
    assert w[16] == 0
    torch.testing.assert_close(w, -w.flip(0))
    # spec anchor values: c=4 -> +-4, +-2 ; c=8 -> +-8, +-4
    assert w[0].item() == -2 * 0.5 * reg_scale
    assert w[1].item() == pytest.approx(-0.5 * reg_scale, rel=1e-6)


def test_weighting_function_matches_official_fixture(parity_dir):
    for variant in 'nx':
        fx = np.load(osp.join(parity_dir, f'dfine_{variant}_coco.npz'))
        up = torch.from_numpy(fx['buffer/decoder.up'])
        reg_scale = torch.from_numpy(fx['buffer/decoder.reg_scale'])
        assert reg_scale.dtype == torch.int64
        w = weighting_function(32, up, reg_scale)
        # the float32 tensor recipe is bit-exact with the official model
        np.testing.assert_array_equal(w.numpy(), fx['full/project_W'])


def test_integral_is_expectation():
    torch.manual_seed(0)
    project = weighting_function(32, torch.tensor([0.5]), 4)
    corners = torch.randn(2, 5, 132)
    dist = fdr_integral(corners, project)
    assert dist.shape == (2, 5, 4)
    prob = corners.reshape(2, 5, 4, 33).softmax(-1)
    torch.testing.assert_close(dist, (prob * project).sum(-1))
    # a one-hot distribution selects its bin value
    onehot = torch.full((1, 132), -1e4)
    for e, b in enumerate([0, 16, 20, 32]):
        onehot[0, e * 33 + b] = 1e4
    torch.testing.assert_close(
        fdr_integral(onehot, project)[0], project[[0, 16, 20, 32]])
    with pytest.raises(ValueError, match=r'expected 4 \* 33'):
        fdr_integral(torch.zeros(3, 100), project)


def test_distance2bbox_zero_distance_is_reference():
    ref = torch.tensor([[0.5, 0.4, 0.2, 0.3], [0.1, 0.9, 0.05, 0.1]])
    out = distance2bbox(ref, torch.zeros(2, 4), torch.tensor([4]))
    torch.testing.assert_close(out, ref)
    # moving the left edge by d*w/c
    d = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    out = distance2bbox(ref, d, 4)
    x1 = 0.5 - 0.1 - 1.0 * 0.2 / 4
    torch.testing.assert_close(out[0, 0], torch.tensor((x1 + 0.6) / 2))
    torch.testing.assert_close(out[0, 2], torch.tensor(0.6 - x1))


@pytest.mark.parametrize('reg_scale', [4, 8])
def test_bbox2distance_inverts_distance2bbox(reg_scale):
    torch.manual_seed(1)
    up = torch.tensor([0.5])
    project = weighting_function(32, up, reg_scale)
    ref = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.6, 0.1, 0.3]])
    # distances strictly inside the W range
    dist = (torch.rand(2, 4) - 0.5) * 2 * project[-2]
    gt = distance2bbox(ref, dist, reg_scale)
    cx, cy, w, h = gt.unbind(-1)
    gt_xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    pos, wr, wl = bbox2distance(ref, gt_xyxy, 32, reg_scale, up)
    assert pos.shape == wr.shape == wl.shape == (8, )
    idx = pos.floor().long()
    recon = project[idx] * wl + project[idx + 1] * wr
    torch.testing.assert_close(recon, dist.reshape(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(wl + wr, torch.ones(8))


def test_translate_gt_out_of_range():
    up = torch.tensor([0.5])
    pos, wr, wl = translate_gt(torch.tensor([-100.0, 100.0, 0.0]), 32, 4, up)
    assert pos.tolist()[0] == 0.0 and wl[0] == 1 and wr[0] == 0
    assert pos[1].item() == pytest.approx(31.9) and wr[1] == 1 and wl[1] == 0
    # 0 lies exactly on bin 16
    assert pos[2].item() == 16 and wl[2] == 1 and wr[2] == 0


def test_coder_roundtrip_and_registry():
    from mmdet.registry import TASK_UTILS
    coder = TASK_UTILS.build(dict(type='FDRBBoxCoder', reg_scale=4))
    assert isinstance(coder, FDRBBoxCoder)
    ref = torch.rand(3, 4) * 0.5 + 0.25
    corners = torch.zeros(3, 132)
    # uniform logits -> expectation 0 (W symmetric) -> reference box
    torch.testing.assert_close(coder.decode(ref, corners), ref)
    with pytest.raises(ValueError, match='even'):
        weighting_function(5, torch.tensor([0.5]), 4)
