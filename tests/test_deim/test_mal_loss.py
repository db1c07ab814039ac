"""DEIM's Matchability-Aware Loss: parity with DEIM's own criterion.

Fixtures (``tests/data/deim``) were made by ``tools/make_deim_fixtures.py``
from DEIM's code (ShihuaHuang95/DEIM at a9aa4adce6b5):

* ``deim_mal_cases.pt``: ``DEIMCriterion.loss_labels_mal`` on fixed logits,
  boxes, targets and matches (IoUs computed by DEIM), its value and
  d loss / d logits, for (gamma 1.5, mal_alpha None), (2.0, 0.75) and a batch
  with an image without objects;
* ``deim_{s,x}_criterion_case*.pt``: the whole ``DEIMCriterion`` with the
  DEIM-D-FINE config on the D-FINE loss fixtures of ``../shared/parity``
  (only the terms are stored; the inputs are read from there).
"""
import copy
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS

from dfine_mmdet.models.losses import (DFINEVarifocalLoss,
                                       MatchabilityAwareLoss,
                                       classification_loss, loss_key)

PROJECT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_official_loss_outputs():
    """tests/test_models/official_loss_outputs.py (the official-dict adapter
    of the loss-parity tests), loaded from its file."""
    import importlib.util
    path = osp.join(PROJECT, 'tests', 'test_models',
                    'official_loss_outputs.py')
    spec = importlib.util.spec_from_file_location('official_loss_outputs',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


from_official = _load_official_loss_outputs().from_official
DATA = osp.join(PROJECT, 'tests', 'data', 'deim')
RTOL = 1e-5


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@pytest.fixture(scope='module')
def mal_cases():
    path = osp.join(DATA, 'deim_mal_cases.pt')
    if not osp.isfile(path):
        pytest.skip(f'{path} missing (tools/make_deim_fixtures.py mal)')
    return torch.load(path, weights_only=True)['cases']


def _dense_targets(case):
    """(labels, ious) [B, Q] as the head builds them from the matches."""
    logits = case['pred_logits']
    B, Q, C = logits.shape
    labels = torch.full((B, Q), C, dtype=torch.int64)
    ious = torch.zeros(B, Q)
    k = 0
    for b, ((q, gt), t) in enumerate(zip(case['indices'], case['targets'])):
        labels[b, q] = t['labels'][gt]
        ious[b, q] = case['ious'][k:k + len(q)]
        k += len(q)
    return labels, ious


def _loss(case):
    alpha = 1.0 if case['mal_alpha'] is None else case['mal_alpha']
    return MatchabilityAwareLoss(alpha=alpha, gamma=case['gamma'])


def test_pure_loss_values_and_grads(mal_cases):
    assert len(mal_cases) == 3
    for case in mal_cases:
        labels, ious = _dense_targets(case)
        logits = case['pred_logits'].clone().requires_grad_(True)
        loss = _loss(case)(
            logits, (labels, ious), avg_factor=case['num_boxes'])
        loss.backward()
        ref = case['loss_mal']
        assert abs(float(loss) - float(ref)) <= RTOL * abs(float(ref)), \
            case['name']
        assert _rel(logits.grad, case['grad_pred_logits']) <= RTOL, \
            case['name']


def test_head_path_names_loss_mal_and_matches(mal_cases):
    """Through the D-FINE head's classification term: the head computes the
    IoUs itself (mmdet ``bbox_overlaps``) and names the term ``loss_mal``."""
    for case in mal_cases:
        C = case['pred_logits'].shape[-1]
        alpha = 1.0 if case['mal_alpha'] is None else case['mal_alpha']
        head = MODELS.build(
            dict(
                type='DFINEHead',
                num_classes=C,
                embed_dims=8,
                num_pred_layer=1,
                loss_cls=dict(
                    type='MatchabilityAwareLoss',
                    alpha=alpha,
                    gamma=case['gamma'])))
        logits = case['pred_logits'].clone().requires_grad_(True)
        key, value = classification_loss(head.loss_cls, logits,
                                         case['pred_boxes'], case['targets'],
                                         case['indices'], case['num_boxes'])
        assert key == loss_key(head.loss_cls) == 'loss_mal'
        losses = {key: value}
        losses['loss_mal'].backward()
        ref = case['loss_mal']
        assert abs(float(losses['loss_mal']) - float(ref)) <= \
            RTOL * abs(float(ref)), case['name']
        assert _rel(logits.grad, case['grad_pred_logits']) <= RTOL


def test_mal_is_not_vfl(mal_cases):
    """The fixture discriminates MAL from D-FINE's VFL (same inputs)."""
    case = mal_cases[0]
    labels, ious = _dense_targets(case)
    vfl = DFINEVarifocalLoss()(
        case['pred_logits'], (labels, ious), avg_factor=case['num_boxes'])
    assert abs(float(vfl) - float(case['loss_mal'])) > \
        1e-3 * abs(float(case['loss_mal']))


def test_bad_inputs_raise():
    loss = MatchabilityAwareLoss()
    with pytest.raises(ValueError, match='labels and ious of shape'):
        loss(
            torch.zeros(2, 5, 3),
            (torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 3\]'):
        loss(torch.zeros(1, 2, 3), (torch.tensor([[0, 4]]), torch.zeros(1, 2)))
    with pytest.raises(ValueError, match='gamma must be > 0'):
        MatchabilityAwareLoss(gamma=0)


# ------------------------------------------------------------ whole loss
CRITERION_CASES = {
    'deim_s_criterion_case1.pt': 'dfine_s_loss_case1.pt',
    'deim_s_criterion_case2.pt': 'dfine_s_loss_case2.pt',
    'deim_s_criterion_case3.pt': 'dfine_s_loss_case3.pt',
    'deim_x_criterion_case2.pt': 'dfine_x_loss_case2.pt',
}


def _deim_head(cfg_file, num_classes):
    """The DEIM config's head (its loss settings), small branches."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(PROJECT, 'configs', 'deim_dfine', cfg_file))
    head = copy.deepcopy(cfg.model.bbox_head.to_dict())
    head.update(num_classes=num_classes, embed_dims=8, num_pred_layer=1)
    for k in ('mlp_act', 'lqe_act'):
        head.pop(k, None)
    return MODELS.build(head)


@pytest.mark.parametrize('case', sorted(CRITERION_CASES))
def test_whole_loss_matches_deim_criterion(parity_dir, case):
    path = osp.join(DATA, case)
    if not osp.isfile(path):
        pytest.skip(f'{path} missing (tools/make_deim_fixtures.py criterion)')
    ref = torch.load(path, weights_only=True)
    fx = torch.load(
        osp.join(parity_dir, CRITERION_CASES[case]), weights_only=True)
    variant = case.split('_')[1]
    crit = _deim_head(f'deim_hgnetv2_{variant}_coco.py',
                      fx['outputs']['pred_logits'].shape[-1])
    assert ref['meta']['criterion_config']['losses'] == [
        'mal', 'boxes', 'local'
    ]
    assert crit.loss_cls.gamma == ref['meta']['criterion_config']['gamma']
    losses = crit.go_lsd_loss(
        targets=fx['targets'], **from_official(fx['outputs']))
    expected = ref['losses']
    # DEIM leaves out the DDF term of a layer that is its own teacher (the
    # last one, and the last denoising layer); D-FINE and this head give it
    # as an exact 0
    extra = set(losses) - set(expected)
    assert all(k.startswith('loss_ddf') for k in extra), extra
    assert all(float(losses[k]) == 0.0 for k in extra)
    assert set(expected) <= set(losses)
    mal_keys = [k for k in expected if k.startswith('loss_mal')]
    assert mal_keys and not any(k.startswith('loss_vfl') for k in losses)
    for k, v in expected.items():
        got = float(losses[k])
        assert abs(got - float(v)) <= RTOL * abs(float(v)) + 1e-6, \
            f'{case} {k}: {got} vs DEIM {float(v)}'
