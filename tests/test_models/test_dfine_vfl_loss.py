"""D-FINE varifocal loss on hand-checkable inputs."""
import math

import pytest
import torch
from mmdet.registry import MODELS

from dfine_mmdet.models.losses import DFINEVarifocalLoss, dfine_varifocal_loss


def _bce(x, t):
    p = 1 / (1 + math.exp(-x))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_elementwise_by_hand():
    x = [[0.3, -1.2, 2.0], [0.5, 0.1, -0.4]]
    pred = torch.tensor(x)
    labels = torch.tensor([0, 3])  # query 1 is background (C = 3)
    scores = torch.tensor([0.6, 0.9])  # background score is ignored
    loss = dfine_varifocal_loss(pred, (labels, scores), reduction='none')
    expected = [
        [
            0.6 * _bce(0.3, 0.6), 0.75 * _sig(-1.2)**2 * _bce(-1.2, 0),
            0.75 * _sig(2.0)**2 * _bce(2.0, 0)
        ],
        [0.75 * _sig(v)**2 * _bce(v, 0) for v in x[1]],
    ]
    torch.testing.assert_close(
        loss, torch.tensor(expected), rtol=1e-5, atol=1e-7)


def test_positive_with_zero_iou_gets_zero_weight():
    # differs from mmdet's VarifocalLoss, which weights it like a negative
    loss = dfine_varifocal_loss(
        torch.tensor([[1.5, 0.0]]), (torch.tensor([0]), torch.tensor([0.0])),
        reduction='none')
    assert loss[0, 0].item() == 0.0
    assert loss[0, 1].item() == pytest.approx(
        0.75 * 0.25 * math.log(2), rel=1e-6)


def test_module_normaliser_and_detached_weight():
    vfl = MODELS.build(dict(type='DFINEVarifocalLoss', loss_weight=2.0))
    pred = torch.tensor([[[0.2, -0.3], [1.0, 0.4]]], requires_grad=True)
    labels = torch.tensor([[1, 2]])
    scores = torch.tensor([[0.5, 0.0]])
    loss = vfl(pred, (labels, scores), avg_factor=4.0)
    ref = dfine_varifocal_loss(pred, (labels, scores), reduction='none')
    assert loss.item() == pytest.approx(2.0 * ref.sum().item() / 4.0, rel=1e-6)
    loss.backward()
    # weight is a constant: d/dx = weight * (sigmoid(x) - target) * 2 / 4
    p = pred.detach().sigmoid()
    target = torch.tensor([[[0.0, 0.5], [0.0, 0.0]]])
    # negatives: 0.75 p^2; the positive entry: its IoU score
    weight = 0.75 * p**2 * (target == 0) + target
    torch.testing.assert_close(pred.grad, weight * (p - target) * 0.5)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match='dfine_varifocal_loss'):
        DFINEVarifocalLoss()(torch.zeros(
            2, 3), (torch.zeros(3, dtype=torch.long), torch.zeros(3)))
