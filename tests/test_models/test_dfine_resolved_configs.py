"""Every config under configs/dfine resolves to the same values as before the
restructure into ``_base_/{models,datasets,schedules}`` (issue 8).

``tests/data/dfine_resolved_configs_before.json`` holds ``Config.to_dict()``
of every non-base config, dumped before anything was changed.  The only
intentional differences are renames, normalised here in one direction (old
-> new) before an exact comparison:

* ``bbox_head.criterion`` (``DFINECriterion``) -> the head's own fields
  (``assigner``, ``go_lsd_assigner``, ``loss_vfl`` -> ``loss_cls``,
  ``loss_giou`` -> ``loss_iou``, ``loss_bbox``, ``loss_fgl``, ``loss_ddf``);
* ``decoder.{reg_max, reg_scale, up}`` and ``bbox_head.reg_max`` ->
  ``bbox_head.bbox_coder`` (``FDRBBoxCoder``);
* neck ``hidden_dim`` / ``nhead`` / ``dim_feedforward`` -> ``embed_dims`` /
  ``num_heads`` / ``feedforward_channels``;
* settings now filled in by ``DFINE.__init__`` (``bbox_head.embed_dims``,
  ``bbox_head.num_pred_layer``, ``neck.feat_strides``, ``dn_cfg``) are
  filled on both sides with :func:`fill_shared_settings`;
* ``backbone.init_cfg=None`` (HGNetV2's default) may be left out;
* the D-FINE hooks moved from ``custom_hooks`` (a list) into
  ``default_hooks`` under the names ``ema`` (``EMAHook``) and ``stop_aug``
  (``DFINEStopAugHook``), so that a config overrides them by name;
  ``reload_best_stage1=False`` may now be written out where it was the
  default;
* the data checks are on (docs/reliability.md): MMEngine's
  ``CheckpointHook`` -> ``AtomicCheckpointHook`` (same arguments), a new
  ``default_hooks.data_skips`` (``DataSkipReportHook``), dataset type
  ``CocoDataset`` -> ``CheckedCocoDataset``, and the Pillow
  ``LoadImageFromFile`` -> ``CheckedLoadImageFromFile(on_error='skip')`` in
  training pipelines (test pipelines keep MMCV's loader, which
  ``DetInferencer`` looks up by name).

Moved: ``configs/dfine/dfine_r50_coco.py`` was the same model as
``configs/dfine_mixed/dfine_r50_coco.py`` apart from the backbone's
``init_cfg`` (``None`` there, a local ImageNet file here) and
``paramwise_cfg.official_regex_style='lx'`` (read only with
``reproduce_official_regex_bug=True``, which mimics an official model's
parameter groups; there is no official R50 model); it is compared with that
config, these two aside.
"""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config

from dfine_mmdet.models.detectors.dfine import fill_shared_settings

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
BEFORE = osp.join(ROOT, 'tests', 'data', 'dfine_resolved_configs_before.json')


MOVED = {'configs/dfine/dfine_r50_coco.py': 'configs/dfine_mixed/dfine_r50_coco.py'}


def _leaf_configs():
    paths = glob.glob(osp.join(ROOT, 'configs', 'dfine', '**', '*.py'),
                      recursive=True)
    return sorted(
        osp.relpath(p, ROOT) for p in paths if '/_base_/' not in p)


def _old_to_new(model):
    """Rename the pre-restructure model fields (see the module docstring)."""
    head, dec, neck = model['bbox_head'], model['decoder'], model['neck']
    crit = head.pop('criterion')
    assert crit.pop('type') == 'DFINECriterion'
    assert crit.pop('num_classes') == head['num_classes']
    reg_max = head.pop('reg_max')
    assert crit.pop('reg_max') == reg_max == dec['reg_max']
    head['bbox_coder'] = dict(
        type='FDRBBoxCoder',
        reg_max=dec.pop('reg_max'),
        reg_scale=dec.pop('reg_scale'),
        up=dec.pop('up'))
    head['assigner'] = crit.pop('assigner')
    head['go_lsd_assigner'] = crit.pop('go_lsd_assigner')
    head['loss_cls'] = crit.pop('loss_vfl')
    head['loss_iou'] = crit.pop('loss_giou')
    for key in ('loss_bbox', 'loss_fgl', 'loss_ddf'):
        head[key] = crit.pop(key)
    assert not crit, f'unhandled criterion fields {sorted(crit)}'
    for old, new in (('hidden_dim', 'embed_dims'), ('nhead', 'num_heads'),
                     ('dim_feedforward', 'feedforward_channels')):
        neck[new] = neck.pop(old)
    return model


HOOK_NAMES = {'EMAHook': 'ema', 'DFINEStopAugHook': 'stop_aug'}


def _hooks_old_to_new(cfg_dict):
    """Move the D-FINE hooks of an old ``custom_hooks`` list into
    ``default_hooks`` by name (see the module docstring)."""
    kept = []
    for hook in cfg_dict.pop('custom_hooks', []):
        name = HOOK_NAMES.get(hook['type'])
        if name is None:
            kept.append(hook)
        else:
            assert name not in cfg_dict['default_hooks'], name
            cfg_dict['default_hooks'][name] = hook
    if kept:
        cfg_dict['custom_hooks'] = kept
    return cfg_dict


def _checked_loader(pipeline, on_error):
    for i, t in enumerate(pipeline or []):
        if t.get('type') == 'LoadImageFromFile':
            assert t.pop('imdecode_backend') == 'pillow'
            t['type'] = 'CheckedLoadImageFromFile'
            t['on_error'] = on_error


def _data_checks_old_to_new(cfg_dict):
    """Turn the pre-data-checks parts into the checked ones (see the module
    docstring)."""
    hooks = cfg_dict['default_hooks']
    assert hooks['checkpoint']['type'] == 'CheckpointHook'
    hooks['checkpoint']['type'] = 'AtomicCheckpointHook'
    hooks['data_skips'] = dict(type='DataSkipReportHook')
    _checked_loader(cfg_dict.get('train_pipeline'), 'skip')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg_dict[key]['dataset']
        if ds.get('type') == 'CocoDataset':
            ds['type'] = 'CheckedCocoDataset'
        if key == 'train_dataloader':
            _checked_loader(ds.get('pipeline'), 'skip')
    return cfg_dict


def _normalise(cfg_dict):
    stop = cfg_dict.get('default_hooks', {}).get('stop_aug')
    if stop is not None:
        stop.setdefault('reload_best_stage1', False)
    model = cfg_dict['model']
    fill_shared_settings(model['neck'], model['decoder'], model['bbox_head'],
                         model.get('dn_cfg'), model['feat_strides'])
    if 'init_cfg' in model['backbone'] and \
            model['backbone']['init_cfg'] is None:
        del model['backbone']['init_cfg']
    return json.loads(json.dumps(cfg_dict, default=repr, sort_keys=True))


def _diff(a, b, path=''):
    """First differing path of two JSON-like values (None when equal)."""
    if type(a) is not type(b):
        return f'{path}: {a!r} vs {b!r}'
    if isinstance(a, dict):
        if set(a) != set(b):
            return f'{path}: keys {sorted(set(a) ^ set(b))}'
        for k in sorted(a):
            d = _diff(a[k], b[k], f'{path}.{k}')
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f'{path}: {len(a)} vs {len(b)} items'
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f'{path}[{i}]')
            if d:
                return d
        return None
    return None if a == b else f'{path}: {a!r} vs {b!r}'


@pytest.fixture(scope='module')
def before():
    with open(BEFORE) as f:
        return json.load(f)


def test_same_set_of_configs(before):
    assert sorted(MOVED.get(p, p) for p in before) == \
        sorted(_leaf_configs() + [MOVED[p] for p in MOVED])


@pytest.mark.parametrize('path', _leaf_configs() + sorted(MOVED))
def test_resolved_values_unchanged(before, path):
    old = _normalise(_data_checks_old_to_new(_hooks_old_to_new(dict(
        before[path], model=_old_to_new(before[path]['model'])))))
    new = Config.fromfile(osp.join(ROOT, MOVED.get(path, path))).to_dict()
    if path in MOVED:
        assert new['model']['backbone'].pop('init_cfg')['type'] == 'Pretrained'
        assert old['optim_wrapper']['paramwise_cfg'].pop(
            'official_regex_style') == 'lx'
    new = _normalise(new)
    d = _diff(old, new)
    assert d is None, f'{path}: {d}'
