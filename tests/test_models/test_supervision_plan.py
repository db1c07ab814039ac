"""The supervision plan of GO-LSD training (``GOLSDLossMixin``): one entry
per supervised output, stating its matches, normalisers, FGL targets and DDF
teacher (the table of ``go_lsd_loss.py``'s docstring), built from
hand-made records without fixtures."""
import pytest
import torch
from mmdet.registry import MODELS

from dfine_mmdet.models.dense_heads.supervision_plan import (BoxPredictions,
                                                             FDRPredictions)

B, Q, C, L, R = 2, 8, 3, 3, 4  # batch, queries, classes, layers, reg_max


def _head():
    return MODELS.build(
        dict(
            type='DFINEHead',
            num_classes=C,
            embed_dims=8,
            num_pred_layer=1,
            bbox_coder=dict(type='FDRBBoxCoder', reg_max=R)))


def _layers(num_queries, seed):
    g = torch.Generator().manual_seed(seed)
    refs = torch.rand(B, num_queries, 4, generator=g) * 0.4 + 0.3
    return FDRPredictions(
        torch.randn(L, B, num_queries, C, generator=g),
        refs[None] + 0.05 * torch.randn(L, B, num_queries, 4, generator=g),
        torch.randn(L, B, num_queries, 4 * (R + 1), generator=g), refs)


def _boxes(seed):
    g = torch.Generator().manual_seed(seed)
    return BoxPredictions(
        torch.randn(B, Q, C, generator=g),
        torch.rand(B, Q, 4, generator=g) * 0.4 + 0.3)


def _targets():
    g = torch.Generator().manual_seed(5)
    return [
        dict(
            labels=torch.tensor([0, 2]),
            boxes=torch.rand(2, 4, generator=g) * 0.3 + 0.3),
        dict(
            labels=torch.tensor([1]),
            boxes=torch.rand(1, 4, generator=g) * 0.3 + 0.3)
    ]


def _dn_meta(groups=2, max_gt=2):
    # D-FINE layout: group g holds 2 * max_gt queries, positives first
    pos = [
        torch.cat([torch.arange(n) + g * 2 * max_gt for g in range(groups)])
        for n in (2, 1)
    ]
    num_dn = groups * 2 * max_gt
    return dict(
        dn_positive_idx=pos, dn_num_group=groups, dn_num_split=[num_dn,
                                                                Q]), num_dn


def test_plan_states_every_output_once():
    head, targets = _head(), _targets()
    layers, pre, enc = _layers(Q, 0), _boxes(1), _boxes(2)
    dn_meta, num_dn = _dn_meta()
    dn_layers, dn_pre = _layers(num_dn, 3), _boxes(4)
    dn_pre = BoxPredictions(dn_pre.logits[:, :num_dn],
                            dn_pre.boxes[:, :num_dn])
    plan = head.supervision_plan(
        layers,
        targets,
        pre=pre,
        enc=[enc],
        dn_layers=dn_layers,
        dn_pre=dn_pre,
        dn_meta=dn_meta)
    assert [e.suffix for e in plan] == [
        '', '_aux_0', '_aux_1', '_pre', '_enc_0', '_dn_0', '_dn_1', '_dn_2',
        '_dn_pre'
    ]
    by = {e.suffix: e for e in plan}
    union = by[''].box_indices
    # matching part: own Hungarian for the class term, the union for boxes
    for s in ('', '_aux_0', '_aux_1', '_pre', '_enc_0'):
        e = by[s]
        assert e.box_indices is union
        assert e.cls_normaliser == 3.0  # GT count
        assert e.box_normaliser == float(sum(len(q) for q, _ in union))
        # every query matched by an output is in the union (GO-LSD keeps
        # one GT per query: the one it is matched to most often)
        for (q, _), (uq, _) in zip(e.output.indices, union):
            assert set(q.tolist()) <= set(uq.tolist()), s
    own_last = head._match(layers.logits[-1], layers.boxes[-1], targets)
    for (q, g), (oq, og) in zip(by[''].output.indices, own_last):
        assert torch.equal(q, oq) and torch.equal(g, og)
    # FDR terms: corners on the layers only; DDF teacher = last layer
    assert by[''].fgl_targets is not None and by[''].teacher is None
    for s in ('_aux_0', '_aux_1'):
        assert by[s].fgl_targets is by[''].fgl_targets
        assert by[s].teacher.corners is layers.corners[-1] or torch.equal(
            by[s].teacher.corners, layers.corners[-1])
    for s in ('_pre', '_enc_0', '_dn_pre'):
        assert by[s].fgl_targets is None and by[s].teacher is None
        assert by[s].output.corners is None
    # FGL targets: the coder's encoding of the union GT w.r.t. the refs
    n_union = sum(len(q) for q, _ in union)
    assert all(t.shape == (4 * n_union, ) for t in by[''].fgl_targets)
    # denoising part: fixed matches, N_dn = num_boxes * groups, DN teacher
    for i in range(L):
        e = by[f'_dn_{i}']
        assert e.cls_normaliser == e.box_normaliser == 3.0 * 2
        assert e.output.indices is e.box_indices
        assert [q.tolist() for q, _ in e.box_indices] == [[0, 1, 4, 5], [0, 4]]
        assert torch.equal(e.teacher.corners, dn_layers.corners[-1])
        assert e.teacher.balance is by['_aux_0'].teacher.balance
    assert len(by['_dn_0'].fgl_targets[0]) == 4 * 6


def test_no_gt_gives_unit_normalisers():
    head = _head()
    empty = [
        dict(labels=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4))
        for _ in range(B)
    ]
    plan = head.supervision_plan(_layers(Q, 0), empty)
    assert [e.suffix for e in plan] == ['', '_aux_0', '_aux_1']
    assert all(e.cls_normaliser == e.box_normaliser == 1.0 for e in plan)
    assert plan[1].teacher.balance[0].item() == 0.0


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_reduced_precision_records_give_float32_terms(dtype):
    head, targets = _head(), _targets()
    layers = FDRPredictions(*(t.to(dtype) for t in _layers(Q, 0)))
    losses = head.go_lsd_loss(layers, targets, pre=_boxes(1))
    ref = head.go_lsd_loss(
        FDRPredictions(*(t.float() for t in layers)), targets, pre=_boxes(1))
    assert list(losses) == list(ref)
    for k, v in losses.items():
        assert v.dtype == torch.float32, k
        assert torch.equal(v, ref[k]), k


def test_class_agnostic_encoder_entries_use_label_zero():
    """``class_agnostic_enc`` (mmdet's two-stage Deformable DETR): the
    ``_enc_*`` entries are matched and supervised with every label 0, the
    other entries with the real labels; off by default."""
    targets = _targets()
    head = _head()
    plan = head.supervision_plan(_layers(Q, 0), targets, enc=[_boxes(1)])
    assert all(e.targets is None for e in plan)
    head.class_agnostic_enc = True
    plan = head.supervision_plan(_layers(Q, 0), targets, enc=[_boxes(1)])
    enc = [e for e in plan if e.suffix.startswith('_enc')]
    assert len(enc) == 1 and all(
        e.targets is None for e in plan if not e.suffix.startswith('_enc'))
    for got, ref in zip(enc[0].targets, targets):
        assert torch.equal(got['labels'], torch.zeros_like(ref['labels']))
        assert torch.equal(got['boxes'], ref['boxes'])
    # the class term of the encoder entry changes with the labels
    agnostic = head.go_lsd_loss(_layers(Q, 0), targets, enc=[_boxes(1)])
    head.class_agnostic_enc = False
    per_class = head.go_lsd_loss(_layers(Q, 0), targets, enc=[_boxes(1)])
    assert not torch.equal(agnostic['loss_vfl_enc_0'],
                           per_class['loss_vfl_enc_0'])
    assert torch.equal(agnostic['loss_vfl'], per_class['loss_vfl'])


def test_own_match_box_losses_when_union_is_off():
    """``union_box_losses=False``: every output's box / FGL terms use its
    own Hungarian match over the GT count; the default uses the union."""
    head, targets = _head(), _targets()
    layers, enc = _layers(Q, 0), _boxes(2)
    union_plan = head.supervision_plan(layers, targets, enc=[enc])
    head.union_box_losses = False
    plan = head.supervision_plan(layers, targets, enc=[enc])
    assert [e.suffix for e in plan] == [e.suffix for e in union_plan]
    union = union_plan[0].box_indices
    # the union of this case is larger than the last layer's own match
    assert sum(map(len, (q for q, _ in union))) > 3
    for e in plan:
        assert e.box_indices is e.output.indices, e.suffix
        assert e.cls_normaliser == e.box_normaliser == 3.0
        if e.output.corners is not None:
            own = head.fgl_targets(layers.refs, targets, e.output.indices)
            assert all(torch.equal(a, b) for a, b in zip(e.fgl_targets, own))
            assert len(e.fgl_targets[0]) == 4 * 3
