"""D-FINE losses (``DFINEHead`` with :class:`GOLSDLossMixin`): parity with
the official ``DFINECriterion`` on the loss fixtures.

Every fixture (``../shared/parity/dfine_*_loss_case*.pt``) holds the exact
decoder-training output structure fed to the official ``DFINECriterion`` and
everything it computed: each weighted term, Hungarian indices of every output,
the GO-LSD union, DN matches, normalisers, FGL targets, DDF balance factors
and (case 2) the gradient of the total loss w.r.t. every output tensor.  The
official dict is turned into the loss's typed records by the test helper
``official_loss_outputs.from_official``.
"""
import copy
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from official_loss_outputs import coder_cfg, from_official

from dfine_mmdet.models.dense_heads.go_lsd_loss import reduce_count
from dfine_mmdet.models.dense_heads.supervision_plan import (BoxPredictions,
                                                             FDRPredictions)

CASES = [
    'dfine_s_loss_case1.pt', 'dfine_s_loss_case2.pt', 'dfine_s_loss_case3.pt',
    'dfine_s_loss_case4.pt', 'dfine_x_loss_case2.pt'
]
NUM_TERMS = {'dfine_s_loss_case1.pt': 20, 'dfine_x_loss_case2.pt': 68}
RTOL = 1e-5  # relative tolerance per loss term
ATOL = 1e-6  # absolute floor for near-zero terms


@pytest.fixture(scope='module')
def fixtures(parity_dir):
    cache = {}

    def load(name):
        if name not in cache:
            cache[name] = torch.load(
                osp.join(parity_dir, name), weights_only=True)
        return cache[name]

    return load


def _head(num_classes, **kwargs):
    """A small D-FINE head (the branches are not used by the loss)."""
    return MODELS.build(
        dict(
            type='DFINEHead',
            num_classes=num_classes,
            embed_dims=8,
            num_pred_layer=1,
            **kwargs))


def _loss(crit, outputs, targets):
    return crit.go_lsd_loss(targets=targets, **from_official(outputs))


def _matching(crit, outputs, targets):
    """Matching state of one step, read from the supervision plan."""
    plan = {
        e.suffix: e
        for e in crit.supervision_plan(
            targets=targets, **from_official(outputs))
    }
    last = plan['']
    res = dict(
        indices=last.output.indices,
        aux_indices=[
            plan[f'_aux_{i}'].output.indices
            for i in range(sum(k.startswith('_aux_') for k in plan))
        ],
        pre_indices=plan['_pre'].output.indices if '_pre' in plan else None,
        enc_indices=[
            plan[f'_enc_{i}'].output.indices
            for i in range(sum(k.startswith('_enc_') for k in plan))
        ],
        go_indices=last.box_indices,
        num_boxes=last.cls_normaliser,
        num_boxes_go=last.box_normaliser,
        fgl_targets=last.fgl_targets,
        dn_indices=None,
        fgl_targets_dn=None)
    # every entry of the matching part shares the union, normalisers and
    # FGL targets; the DDF balance factors are those of the union
    for suffix, e in plan.items():
        if not suffix.startswith('_dn'):
            assert e.box_indices is last.box_indices, suffix
            assert (e.cls_normaliser,
                    e.box_normaliser) == (res['num_boxes'],
                                          res['num_boxes_go']), suffix
    if '_aux_0' in plan:
        res['ddf_num_pos'], res['ddf_num_neg'] = plan['_aux_0'].teacher.balance
    if '_dn_0' in plan:
        res['dn_indices'] = plan['_dn_0'].output.indices
        res['fgl_targets_dn'] = plan['_dn_0'].fgl_targets
        res['dn_num_boxes'] = plan['_dn_0'].cls_normaliser
    return res


def _criterion(fx):
    meta = fx['meta']
    crit = _head(
        fx['outputs']['pred_logits'].shape[-1],
        bbox_coder=coder_cfg(fx['outputs']))
    # the defaults are the official configuration the fixtures were made with
    cfg = meta['criterion_config']
    assert cfg['losses'] == ['vfl', 'boxes', 'local']
    assert crit.loss_cls.alpha == cfg['alpha']
    assert crit.loss_cls.gamma == cfg['gamma']
    assert crit.reg_max == cfg['reg_max']
    weights = dict(
        loss_vfl=crit.loss_cls.loss_weight,
        loss_bbox=crit.loss_bbox.loss_weight,
        loss_giou=crit.loss_iou.loss_weight,
        loss_fgl=crit.loss_fgl.loss_weight,
        loss_ddf=crit.loss_ddf.loss_weight)
    assert weights == {k: float(v) for k, v in cfg['weight_dict'].items()}
    m = cfg['matcher']
    assert (crit.assigner.cost_class, crit.assigner.cost_bbox,
            crit.assigner.cost_giou) == (m['weight_dict']['cost_class'],
                                         m['weight_dict']['cost_bbox'],
                                         m['weight_dict']['cost_giou'])
    assert (crit.assigner.alpha, crit.assigner.gamma) == (m['alpha'],
                                                          m['gamma'])
    return crit


def _assert_pairs_equal(ours, ref, what):
    assert len(ours) == len(ref), what
    for img, ((q, g), (rq, rg)) in enumerate(zip(ours, ref)):
        assert torch.equal(q.cpu(), rq), f'{what} image {img} queries'
        assert torch.equal(g.cpu(), rg), f'{what} image {img} gts'


def _snapshot(obj):
    """Deep copy with tensors cloned, to check the inputs are not mutated."""
    return copy.deepcopy(obj)


def _assert_same_structure(a, b, path=''):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), \
            f'{path}: keys {list(a)} vs {list(b)}'
        for k in a:
            _assert_same_structure(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_structure(x, y, f'{path}[{i}]')
    else:
        assert a == b, path


@pytest.mark.parametrize('case', CASES)
def test_loss_terms_match_official(fixtures, case):
    fx = fixtures(case)
    crit = _criterion(fx)
    outputs, targets = fx['outputs'], fx['targets']
    before = (_snapshot(outputs), _snapshot(targets))
    losses = _loss(crit, outputs, targets)

    ref = fx['losses']
    assert set(losses) == set(ref)
    assert list(losses) == list(ref)  # same order as the official dict
    if case in NUM_TERMS:
        assert len(losses) == NUM_TERMS[case]
    elif fx['meta']['with_denoising']:
        assert len(losses) == 38
    worst = 0.0
    for k, r in ref.items():
        v = losses[k]
        assert v.dim() == 0 and torch.isfinite(v), k
        err = abs(v.item() - r.item())
        assert err <= RTOL * abs(r.item()) + ATOL, \
            f'{case} {k}: ours {v.item():.8g} official {r.item():.8g}'
        if r.item() != 0:
            worst = max(worst, err / abs(r.item()))
    total = sum(losses.values())
    assert abs(total.item() - fx['total_loss'].item()) <= \
        RTOL * abs(fx['total_loss'].item())
    print(f'{case}: max relative term difference {worst:.2e}')

    # the criterion must not write into its inputs
    _assert_same_structure(before[0], outputs, 'outputs')
    _assert_same_structure(before[1], targets, 'targets')


@pytest.mark.parametrize('case', CASES)
def test_matching_state_matches_official(fixtures, case):
    fx = fixtures(case)
    crit = _criterion(fx)
    res = _matching(crit, fx['outputs'], fx['targets'])

    ref = fx['indices']
    _assert_pairs_equal(res['indices'], ref['last'], 'last')
    for i, ind in enumerate(res['aux_indices']):
        _assert_pairs_equal(ind, ref[f'aux_{i}'], f'aux_{i}')
    _assert_pairs_equal(res['pre_indices'], ref['pre'], 'pre')
    _assert_pairs_equal(res['enc_indices'][0], ref['enc_0'], 'enc_0')
    assert len(res['aux_indices']) == fx['meta']['num_decoder_layers'] - 1
    _assert_pairs_equal(res['go_indices'], fx['go_indices'], 'go_indices')
    if fx['meta']['with_denoising']:
        _assert_pairs_equal(res['dn_indices'], fx['dn_indices'], 'dn')
    assert res['num_boxes'] == fx['num_boxes']
    assert res['num_boxes_go'] == fx['num_boxes_go']
    assert res['ddf_num_pos'].item() == pytest.approx(
        fx['ddf_num_pos'], rel=1e-6)
    assert res['ddf_num_neg'].item() == pytest.approx(
        fx['ddf_num_neg'], rel=1e-6)
    for name in ('fgl_targets', 'fgl_targets_dn'):
        if fx.get(name) is None:
            continue
        assert len(res[name]) == len(fx[name]) == 3, name
        for ours, official in zip(res[name], fx[name]):
            assert ours.shape == official.shape, name
            torch.testing.assert_close(
                ours.cpu(), official, rtol=1e-5, atol=1e-6)


def _leaf_copy(outputs, aliases):
    """Clone every tensor path of ``outputs`` into an independent leaf."""
    leaves = {}

    def rec(obj, path):
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point():
                leaf = obj.detach().clone().requires_grad_(True)
                leaves[path] = leaf
                return leaf
            return obj.clone()
        if isinstance(obj, dict):
            return {
                k: rec(v, f'{path}.{k}' if path else k)
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [rec(v, f'{path}.{i}') for i, v in enumerate(obj)]
        return copy.deepcopy(obj)

    copied = rec(outputs, '')
    # aliased paths are separate leaves now (the fixture's grads are per path)
    assert all(p in leaves for p in aliases)
    return copied, leaves


def test_gradients_match_official(fixtures):
    fx = fixtures('dfine_s_loss_case2.pt')
    crit = _criterion(fx)
    outputs, leaves = _leaf_copy(fx['outputs'], fx['aliases'])
    losses = _loss(crit, outputs, fx['targets'])
    sum(losses.values()).backward()

    ref = fx['grads']
    worst = 0.0
    for path, leaf in leaves.items():
        if path not in ref:
            assert leaf.grad is None, \
                f'{path} must get no gradient (detached in the official code)'
            continue
        assert leaf.grad is not None, f'{path} got no gradient'
        scale = ref[path].abs().max().item()
        err = (leaf.grad - ref[path]).abs().max().item()
        assert err <= 1e-5 * scale + 1e-9, \
            f'{path}: max abs grad diff {err:.3e} (scale {scale:.3e})'
        worst = max(worst, err / max(scale, 1e-30))
    missing = set(ref) - set(leaves)
    assert not missing, f'fixture grads for unknown paths {missing}'
    print(f'max gradient difference relative to max |grad|: {worst:.2e}')


def test_zero_gt_batch_without_denoising_is_finite():
    """Hand-made batch (no fixture): 1 layer, no GT anywhere."""
    torch.manual_seed(0)
    crit = _head(3, bbox_coder=dict(type='FDRBBoxCoder', reg_max=4))
    b, q = 2, 5

    def layer(teacher=None):
        out = dict(
            pred_logits=torch.randn(b, q, 3, requires_grad=True),
            pred_boxes=torch.rand(b, q, 4).requires_grad_(),
            pred_corners=torch.randn(b, q, 20, requires_grad=True),
            ref_points=torch.rand(b, q, 4))
        if teacher is not None:
            out.update(
                teacher_corners=teacher['pred_corners'],
                teacher_logits=teacher['pred_logits'])
        return out

    last = layer()
    outputs = dict(
        last,
        up=torch.tensor([0.5]),
        reg_scale=torch.tensor([4]),
        aux_outputs=[layer(last)],
        pre_outputs=dict(
            pred_logits=torch.randn(b, q, 3), pred_boxes=torch.rand(b, q, 4)),
        enc_aux_outputs=[
            dict(
                pred_logits=torch.randn(b, q, 3),
                pred_boxes=torch.rand(b, q, 4))
        ])
    targets = [
        dict(labels=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4))
        for _ in range(b)
    ]
    losses = _loss(crit, outputs, targets)
    assert len(losses) == 4 + 5 + 3 + 3
    for k, v in losses.items():
        assert torch.isfinite(v), k
    for k in ('loss_bbox', 'loss_giou', 'loss_fgl', 'loss_bbox_aux_0'):
        assert losses[k].item() == 0.0, k
    # without GT every logit is a negative: VFL = sum(a p^2 BCE(x, 0)) / 1
    p = last['pred_logits'].sigmoid()
    expected = (0.75 * p**2 * -torch.log1p(-p)).sum()
    assert losses['loss_vfl'].item() == pytest.approx(
        expected.item(), rel=1e-5)
    sum(losses.values()).backward()
    assert last['pred_logits'].grad.abs().sum() > 0
    res = _matching(crit, outputs, targets)
    assert res['num_boxes'] == 1.0 and res['num_boxes_go'] == 1.0


def test_rejects_inconsistent_inputs():
    crit = _head(3, bbox_coder=dict(type='FDRBBoxCoder', reg_max=4))
    empty = [
        dict(labels=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4))
    ]

    def layers(num_classes=3, num_corners=20):
        return FDRPredictions(
            torch.zeros(1, 1, 2, num_classes), torch.rand(1, 1, 2, 4),
            torch.zeros(1, 1, 2, num_corners), torch.rand(1, 2, 4))

    with pytest.raises(ValueError, match='num_classes=3'):
        crit.go_lsd_loss(layers(num_classes=4), empty)
    with pytest.raises(ValueError, match='2 targets'):
        crit.go_lsd_loss(layers(), empty * 2)
    with pytest.raises(ValueError, match='reg_max=4'):
        crit.go_lsd_loss(layers(num_corners=132), empty)
    with pytest.raises(KeyError, match='dn_meta'):
        crit.go_lsd_loss(layers(), empty, dn_layers=layers())
    losses = crit.go_lsd_loss(
        layers(),
        empty,
        pre=BoxPredictions(torch.zeros(1, 2, 3), torch.rand(1, 2, 4)))
    assert set(losses) == {
        'loss_vfl', 'loss_bbox', 'loss_giou', 'loss_fgl', 'loss_vfl_pre',
        'loss_bbox_pre', 'loss_giou_pre'
    }


def test_half_precision_outputs_give_float32_losses(fixtures):
    """AMP: predictions may arrive in reduced precision; the criterion upcasts
    them and computes every term in float32 (autocast disabled)."""
    fx = fixtures('dfine_s_loss_case2.pt')
    crit = _criterion(fx)

    def to_bf16(obj):
        if isinstance(obj, torch.Tensor):
            return obj.bfloat16() if obj.is_floating_point() else obj
        if isinstance(obj, dict):
            return {k: to_bf16(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [to_bf16(v) for v in obj]
        return obj

    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = _loss(crit, to_bf16(fx['outputs']), fx['targets'])
    assert set(losses) == set(fx['losses'])
    for k, v in losses.items():
        assert v.dtype == torch.float32, k
        # bf16 inputs (8 bit mantissa): a few percent at most
        assert v.item() == pytest.approx(
            fx['losses'][k].item(), rel=0.05, abs=2e-2), k


def _normaliser_worker(rank, world_size, init_file, counts, results):
    import torch.distributed as dist
    dist.init_process_group(
        'gloo',
        init_method=f'file://{init_file}',
        rank=rank,
        world_size=world_size)
    try:
        results[rank] = reduce_count(counts[rank], torch.device('cpu'))
    finally:
        dist.destroy_process_group()


def test_normalisers_are_averaged_over_processes(tmp_path):
    """num_boxes / num_boxes_go: all-reduce mean over GPUs, clamped to 1."""
    import torch.multiprocessing as mp
    assert reduce_count(0, torch.device('cpu')) == 1.0
    assert reduce_count(7, torch.device('cpu')) == 7.0
    manager = mp.Manager()
    results = manager.dict()
    # fork: the workers reuse the imported modules (spawn would re-import
    # mmdet in each of them)
    mp.start_processes(
        _normaliser_worker,
        args=(2, str(tmp_path / 'init'), [3, 0], results),
        nprocs=2,
        start_method='fork')
    assert dict(results) == {0: 1.5, 1: 1.5}


def test_configurable_weights_and_disabled_terms(fixtures):
    fx = fixtures('dfine_s_loss_case1.pt')
    crit = _head(
        fx['outputs']['pred_logits'].shape[-1],
        loss_bbox=dict(type='L1Loss', loss_weight=10.0),
        loss_ddf=dict())
    losses = _loss(crit, fx['outputs'], fx['targets'])
    ref = fx['losses']
    assert not any('ddf' in k for k in losses)
    assert set(losses) == {k for k in ref if 'ddf' not in k}
    for k, v in losses.items():
        scale = 2.0 if k.startswith('loss_bbox') else 1.0
        assert v.item() == pytest.approx(scale * ref[k].item(), rel=1e-5), k
