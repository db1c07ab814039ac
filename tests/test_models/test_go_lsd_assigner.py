"""GO-LSD union assignment: hand-checked unions and the official fixtures."""
import os.path as osp

import pytest
import torch
from mmdet.registry import TASK_UTILS

from dfine_mmdet.models.task_modules.assigners import GOLSDAssigner


def _pairs(q, g):
    return torch.tensor(q, dtype=torch.long), torch.tensor(g, dtype=torch.long)


def test_union_counts_and_keeps_most_frequent_pair_per_query():
    assigner = TASK_UTILS.build(dict(type='GOLSDAssigner'))
    # one image, three outputs, GT 0..2
    last = [_pairs([5, 7, 9], [0, 1, 2])]
    aux = [_pairs([5, 7, 3], [0, 2, 1])]  # query 7 -> gt 2 once
    pre = [_pairs([5, 8, 9], [0, 1, 2])]
    (q, g), = assigner.assign([last, aux, pre])
    # counts: (5,0)x3, (9,2)x2, (3,1)x1, (7,1)x1, (7,2)x1, (8,1)x1
    # sorted by count desc (ties in torch.unique's lexicographic order):
    # (5,0) (9,2) (3,1) (7,1) (7,2) (8,1); query 7 keeps (7,1)
    assert q.tolist() == [5, 9, 3, 7, 8]
    assert g.tolist() == [0, 2, 1, 1, 1]
    assert q.dtype == torch.long and g.dtype == torch.long


def test_query_takes_the_majority_gt_and_gt_may_get_several_queries():
    assigner = GOLSDAssigner()
    outs = [[_pairs([4], [1])], [_pairs([4], [0])], [_pairs([4], [0])],
            [_pairs([2], [0])]]
    (q, g), = assigner.assign(outs)
    assert q.tolist() == [4, 2]
    assert g.tolist() == [0, 0]


def test_images_are_independent_and_empty_images_work():
    assigner = GOLSDAssigner()
    empty = _pairs([], [])
    outs = [[_pairs([1, 2], [0, 1]), empty], [_pairs([1, 3], [0, 1]), empty]]
    (q0, g0), (q1, g1) = assigner.assign(outs)
    assert q0.tolist() == [1, 2, 3] and g0.tolist() == [0, 1, 1]
    assert q1.numel() == 0 and g1.numel() == 0


def test_inconsistent_image_counts_raise():
    with pytest.raises(ValueError, match='output 1'):
        GOLSDAssigner().assign([[_pairs([1], [0])], []])


@pytest.mark.parametrize('case', [
    'dfine_s_loss_case1.pt', 'dfine_s_loss_case2.pt', 'dfine_s_loss_case3.pt',
    'dfine_s_loss_case4.pt', 'dfine_x_loss_case2.pt'
])
def test_union_of_official_matches_equals_official_union(parity_dir, case):
    fx = torch.load(osp.join(parity_dir, case), weights_only=True)
    ind = fx['indices']
    num_aux = fx['meta']['num_decoder_layers'] - 1
    layers = ([ind['last']] + [ind[f'aux_{i}'] for i in range(num_aux)] +
              [ind['pre'], ind['enc_0']])
    union = GOLSDAssigner().assign(layers)
    for (q, g), (rq, rg) in zip(union, fx['go_indices']):
        assert torch.equal(q, rq) and torch.equal(g, rg)
    assert max(sum(len(q) for q, _ in union), 1) == fx['num_boxes_go']
