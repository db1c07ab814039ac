"""Decoupled Distillation Focal loss (GO-LSD), hand-checked inputs."""
import math

import pytest
import torch
from mmdet.registry import MODELS

from dfine_mmdet.models.losses import (DecoupledDistillationFocalLoss,
                                       ddf_balance_factors,
                                       distribution_distillation_kl)

T = 5.0


def _teacher_row(p0):
    """Logits whose softmax at temperature T is (p0, 1 - p0)."""
    return [T * math.log(p0 / (1 - p0)), 0.0]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_temperature_scaled_kl():
    student = torch.zeros(2, 2)  # uniform
    teacher = torch.tensor([_teacher_row(0.8), _teacher_row(0.5)])
    kl = distribution_distillation_kl(
        student, teacher, temperature=T, reduction='none')
    expected = [T**2 * _kl([0.8, 0.2], [0.5, 0.5]), 0.0]
    assert kl.tolist() == pytest.approx(expected, abs=1e-5)


def test_decoupled_reduction_by_hand():
    ddf = MODELS.build(
        dict(
            type='DecoupledDistillationFocalLoss',
            temperature=T,
            loss_weight=1.5))
    student = torch.zeros(4, 2, requires_grad=True)
    teacher = torch.tensor([
        _teacher_row(0.8),
        _teacher_row(0.8),
        _teacher_row(0.6),
        _teacher_row(0.9)
    ])
    weight = torch.tensor([0.5, 0.25, 0.9, 0.3])
    pos_mask = torch.tensor([True, True, False, False])
    kl = [T**2 * _kl([p, 1 - p], [0.5, 0.5]) for p in (0.8, 0.8, 0.6, 0.9)]
    pos = (0.5 * kl[0] + 0.25 * kl[1]) / 2
    neg = (0.9 * kl[2] + 0.3 * kl[3]) / 2
    num_pos, num_neg = 2.0, 3.0
    loss = ddf(student, teacher, weight, pos_mask, num_pos, num_neg)
    expected = 1.5 * (pos * num_pos + neg * num_neg) / (num_pos + num_neg)
    assert loss.item() == pytest.approx(expected, rel=1e-5)

    # only matched entries: the unmatched mean is absent (counts as 0)
    loss = ddf(student, teacher, weight, torch.ones(4, dtype=torch.bool),
               torch.tensor(2.0), torch.tensor(0.0))
    all_pos = (0.5 * kl[0] + 0.25 * kl[1] + 0.9 * kl[2] + 0.3 * kl[3]) / 4
    assert loss.item() == pytest.approx(1.5 * all_pos, rel=1e-5)


def test_gradient_reaches_only_the_student():
    student = torch.zeros(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    weight = torch.rand(3, requires_grad=True)
    loss = DecoupledDistillationFocalLoss()(student, teacher, weight,
                                            torch.tensor([True, False, False]),
                                            1.0, 1.0)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None and weight.grad is None


def test_student_equal_to_teacher_gives_exact_zero():
    corners = torch.randn(8, 33, requires_grad=True)
    loss = DecoupledDistillationFocalLoss(loss_weight=1.5)(
        corners, corners, torch.ones(8), torch.zeros(8, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()  # still connected to the graph
    assert torch.equal(corners.grad, torch.zeros_like(corners))


def test_balance_factors():
    mask = torch.tensor([True] * 3 + [False] * 7)
    num_pos, num_neg = ddf_balance_factors(mask, batch_size=2)
    # official: sqrt(count * 8 / batch_size)
    assert num_pos.item() == pytest.approx(math.sqrt(3 * 4))
    assert num_neg.item() == pytest.approx(math.sqrt(7 * 4))
