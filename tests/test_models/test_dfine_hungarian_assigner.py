"""DFINEHungarianAssigner: official matching cost and assignments."""
import math
import os.path as osp

import pytest
import torch
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData

from dfine_mmdet.models.task_modules.assigners import DFINEHungarianAssigner
from dfine_mmdet.models.utils import bbox_cxcywh_to_xyxy_clamped


def test_clamped_box_conversion():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.3, 0.3, -0.1, 0.2]])
    xyxy = bbox_cxcywh_to_xyxy_clamped(boxes)
    torch.testing.assert_close(
        xyxy, torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.3, 0.2, 0.3, 0.4]]))


def test_cost_matrix_by_hand():
    assigner = DFINEHungarianAssigner()
    logit = math.log(0.25 / 0.75)  # p = 0.25 for every class
    logits = torch.full((1, 2), logit)
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    cost = assigner.cost_matrix(logits, pred, torch.tensor([1]), gt)
    p = 0.25
    focal = 0.25 * (1 - p)**2 * -math.log(p + 1e-8) - \
        0.75 * p**2 * -math.log(1 - p + 1e-8)
    # identical boxes: L1 = 0, GIoU = 1
    assert cost.shape == (1, 1)
    assert cost.item() == pytest.approx(2 * focal - 2 * 1.0, rel=1e-6)

    pred2 = torch.tensor([[0.6, 0.5, 0.2, 0.2]])  # shifted by 0.1
    cost2 = assigner.cost_matrix(logits, pred2, torch.tensor([1]), gt)
    giou = (0.1 * 0.2) / (0.06) - (0.3 * 0.2 - 0.06) / (0.3 * 0.2)
    assert cost2.item() == pytest.approx(
        5 * 0.1 + 2 * focal - 2 * giou, rel=1e-5)


def test_nan_cost_becomes_one():
    assigner = DFINEHungarianAssigner(cost_class=0.0, cost_giou=0.0)
    pred = torch.tensor([[float('nan'), 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]])
    cost = assigner.cost_matrix(
        torch.zeros(2, 1), pred, torch.tensor([0]),
        torch.tensor([[0.9, 0.9, 0.1, 0.1]]))
    assert cost[0, 0].item() == 1.0
    assert cost[1, 0].item() == pytest.approx(5 * (0.7 + 0.7), rel=1e-6)


def test_match_and_assign_agree():
    torch.manual_seed(3)
    assigner = TASK_UTILS.build(dict(type='DFINEHungarianAssigner'))
    logits = torch.randn(2, 7, 4)
    boxes = torch.rand(2, 7, 4) * 0.5 + 0.1
    targets = [
        dict(labels=torch.tensor([1, 3]), boxes=torch.rand(2, 4) * 0.5 + 0.1),
        dict(labels=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4))
    ]
    matches = assigner.match(logits, boxes, targets)
    q, g = matches[0]
    assert sorted(g.tolist()) == [0, 1] and torch.all(q[1:] > q[:-1])
    # brute force over all query pairs gives the same optimum
    cost = assigner.cost_matrix(logits[0], boxes[0], targets[0]['labels'],
                                targets[0]['boxes'])
    best = min((cost[a, 0] + cost[b, 1]).item() for a in range(7)
               for b in range(7) if a != b)
    assert (cost[q, g].sum().item()) == pytest.approx(best)
    assert matches[1][0].numel() == 0

    res = assigner.assign(
        InstanceData(scores=logits[0], bboxes=boxes[0]),
        InstanceData(labels=targets[0]['labels'], bboxes=targets[0]['boxes']))
    pos = torch.nonzero(res.gt_inds > 0).squeeze(1)
    assert torch.equal(pos, q)
    assert torch.equal(res.gt_inds[pos] - 1, g)
    assert torch.equal(res.labels[pos], targets[0]['labels'][g])


def test_matches_official_indices(parity_dir):
    fx = torch.load(
        osp.join(parity_dir, 'dfine_x_loss_case2.pt'), weights_only=True)
    assigner = DFINEHungarianAssigner()
    out = fx['outputs']
    named = dict(
        last=out, pre=out['pre_outputs'], enc_0=out['enc_aux_outputs'][0])
    named.update({f'aux_{i}': o for i, o in enumerate(out['aux_outputs'])})
    for name, o in named.items():
        ours = assigner.match(o['pred_logits'], o['pred_boxes'], fx['targets'])
        for (q, g), (rq, rg) in zip(ours, fx['indices'][name]):
            assert torch.equal(q, rq) and torch.equal(g, rg), name
