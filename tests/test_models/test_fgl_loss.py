"""Fine-Grained Localization loss (the FDR training target), hand-checked."""
import math

import pytest
import torch
from mmdet.registry import MODELS

from dfine_mmdet.models.losses import (FineGrainedLocalizationLoss,
                                       fine_grained_localization_loss)
from dfine_mmdet.models.task_modules.coders.fdr_coder import (
    bbox2distance, weighting_function)


def test_two_bin_interpolated_cross_entropy():
    # 3 bins with probabilities (1/2, 1/4, 1/4)
    pred = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
    position = torch.tensor([0.0, 1.0])
    weight_right = torch.tensor([0.4, 0.9])
    weight_left = 1 - weight_right
    loss = fine_grained_localization_loss(
        pred, (position, weight_right, weight_left), reduction='none')
    expected = [
        0.6 * math.log(2) + 0.4 * math.log(4),
        0.1 * math.log(4) + 0.9 * math.log(4)
    ]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)


def test_module_weight_and_normaliser():
    fgl = MODELS.build(
        dict(type='FineGrainedLocalizationLoss', loss_weight=0.15))
    pred = torch.log(torch.tensor([[0.5, 0.25, 0.25]] * 4))
    target = (torch.zeros(4), torch.zeros(4), torch.ones(4))  # all on bin 0
    iou = torch.tensor([1.0, 0.5, 0.5, 0.0])
    loss = fgl(pred, target, iou, avg_factor=2.0)
    # sum(iou * log 2) / 2 * 0.15
    assert loss.item() == pytest.approx(0.15 * 2.0 * math.log(2) / 2, rel=1e-6)


def test_targets_on_the_weighting_grid():
    """A GT equal to the reference box sits exactly on W = 0 (bin 16)."""
    up, reg_scale = torch.tensor([0.5]), torch.tensor([4])
    # dyadic values, so the distances are exactly 0 in float32
    ref = torch.tensor([[0.5, 0.5, 0.25, 0.5]])
    gt = torch.tensor([[0.375, 0.25, 0.625, 0.75]])  # xyxy of ref
    position, w_right, w_left = bbox2distance(ref, gt, 32, reg_scale, up)
    assert position.tolist() == [16.0] * 4
    assert w_right.tolist() == pytest.approx([0.0] * 4, abs=1e-6)
    assert w_left.tolist() == pytest.approx([1.0] * 4, abs=1e-6)

    # the loss is then the cross entropy of bin 16, times the IoU
    corners = torch.randn(4, 33)
    loss = FineGrainedLocalizationLoss()(
        corners, (position, w_right, w_left),
        torch.full((4, ), 0.5),
        avg_factor=1.0)
    ce16 = -torch.log_softmax(corners, -1)[:, 16]
    assert loss.item() == pytest.approx(0.5 * ce16.sum().item(), rel=1e-5)

    # halfway between W_17 and W_18 -> equal weights on bins 17 and 18
    w = weighting_function(32, up, reg_scale)
    t = (w[17] + w[18]) / 2
    # left edge distance t: x1 = cx - (c/2 + t) * w / c
    x1 = 0.5 - (2 + t.item()) * 0.25 / 4
    gt2 = torch.tensor([[x1, 0.25, 0.625, 0.75]])
    position, w_right, w_left = bbox2distance(ref, gt2, 32, reg_scale, up)
    assert position[0].item() == 17.0
    assert w_right[0].item() == pytest.approx(0.5, abs=1e-4)
    assert w_left[0].item() == pytest.approx(0.5, abs=1e-4)


def test_gradient_moves_mass_towards_the_target_bins():
    pred = torch.zeros(1, 5, requires_grad=True)
    target = (torch.tensor([1.0]), torch.tensor([0.25]), torch.tensor([0.75]))
    FineGrainedLocalizationLoss()(pred, target, avg_factor=1.0).backward()
    grad = pred.grad[0]
    # descent direction raises bins 1 and 2 (more for the heavier bin 1)
    assert grad[1] < grad[2] < 0
    assert torch.all(grad[[0, 3, 4]] > 0)
    assert grad.sum().abs() < 1e-6


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match='fine_grained_localization_loss'):
        fine_grained_localization_loss(
            torch.zeros(3, 5),
            (torch.zeros(2), torch.zeros(2), torch.zeros(2)))
