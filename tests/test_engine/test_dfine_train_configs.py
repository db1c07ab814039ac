"""Every D-FINE config dry-builds with its training parts, and carries the
official schedule.

Built per config: the model, the optimizer wrapper (AdamW groups of
``DFINEOptimWrapperConstructor``; ``AmpOptimWrapper`` swapped for
``OptimWrapper`` because AMP needs CUDA), the LR schedulers, the training
pipeline and the custom hooks.  Datasets are not built (no data here).
"""
import glob
import os.path as osp

import pytest
import torch
from mmdet.registry import (HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS,
                            PARAM_SCHEDULERS)
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope

import dfine_mmdet  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    p for p in glob.glob(
        osp.join(ROOT, 'configs', 'dfine', '**', '*.py'), recursive=True)
    if '_base_' not in p)

# official resolved configs (shared/docs/official_resolved_configs.json, spec
# section 6; custom = configs/dfine/custom/*_custom.yml):
# lr, backbone lr, weight decay, epochs, stop epoch, multi-scale repeat, total
# batch, EMA warmups, LR warmup iterations, regex style
OFFICIAL = {
    'dfine_hgnetv2_n_coco':
    (8e-4, 4e-4, 1e-4, 160, 148, None, 128, 1000, 500, 'nsm'),
    'dfine_hgnetv2_s_coco':
    (2e-4, 1e-4, 1e-4, 132, 120, 20, 32, 1000, 500, 'nsm'),
    'dfine_hgnetv2_m_coco':
    (2e-4, 2e-5, 1e-4, 132, 120, 6, 32, 1000, 500, 'nsm'),
    'dfine_hgnetv2_l_coco':
    (2.5e-4, 1.25e-5, 1.25e-4, 80, 72, 4, 32, 1000, 500, 'lx'),
    'dfine_hgnetv2_x_coco': (2.5e-4, 2.5e-6, 1.25e-4, 80, 72, 3, 32, 1000, 500,
                             'lx'),
    'dfine_hgnetv2_n_obj365': (8e-4, 4e-4, 1e-4, 48, 500, None, 128, 1000, 500,
                               'nsm'),
    'dfine_hgnetv2_s_obj365': (2.5e-4, 1.25e-4, 1.25e-4, 36, 500, 20, 32, 1000,
                               500, 'nsm'),
    'dfine_hgnetv2_m_obj365': (2.5e-4, 2.5e-5, 1.25e-4, 36, 500, 6, 32, 1000,
                               500, 'nsm'),
    'dfine_hgnetv2_l_obj365': (2.5e-4, 1.25e-5, 1.25e-4, 24, 500, 4, 32, 1000,
                               500, 'lx'),
    'dfine_hgnetv2_x_obj365': (2.5e-4, 2.5e-6, 1.25e-4, 24, 500, 3, 32, 1000,
                               500, 'lx'),
    'dfine_hgnetv2_n_obj2coco': (8e-4, 4e-4, 1e-4, 64, 56, None, 128, 0, 0,
                                 'nsm'),
    'dfine_hgnetv2_s_obj2coco': (2.5e-4, 1.25e-4, 1.25e-4, 64, 56, 10, 32, 0,
                                 0, 'nsm'),
    'dfine_hgnetv2_m_obj2coco': (2.5e-4, 2.5e-5, 1.25e-4, 56, 48, 6, 32, 0, 0,
                                 'nsm'),
    'dfine_hgnetv2_l_obj2coco': (2.5e-4, 1.25e-5, 1.25e-4, 36, 30, 4, 32, 0, 0,
                                 'lx'),
    'dfine_hgnetv2_x_obj2coco': (2.5e-4, 2.5e-6, 1.25e-4, 36, 30, 3, 32, 0, 0,
                                 'lx'),
    'dfine_hgnetv2_n_custom': (8e-4, 4e-4, 1e-4, 220, 200, None, 128, 1000,
                               500, 'nsm'),
    'dfine_hgnetv2_s_custom': (4e-4, 2e-4, 1e-4, 220, 200, 20, 64, 1000, 500,
                               'nsm'),
    'dfine_hgnetv2_m_custom': (2.5e-4, 2.5e-5, 1.25e-4, 132, 120, 6, 32, 1000,
                               500, 'nsm'),
    'dfine_hgnetv2_l_custom': (2.5e-4, 1.25e-5, 1.25e-4, 80, 72, 4, 32, 1000,
                               500, 'lx'),
    'dfine_hgnetv2_x_custom': (2.5e-4, 2.5e-6, 1.25e-4, 80, 72, 3, 32, 1000,
                               500, 'lx'),
}


def _name(path):
    return osp.splitext(osp.basename(path))[0]


def test_every_official_variant_has_a_config():
    names = {_name(p) for p in CONFIGS}
    assert set(OFFICIAL) <= names, set(OFFICIAL) - names


@pytest.mark.parametrize('path', CONFIGS, ids=_name)
def test_config_dry_builds(path):
    init_default_scope('mmdet')
    cfg = Config.fromfile(path)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ow_cfg = cfg.optim_wrapper.copy()
    if ow_cfg.get('type') == 'AmpOptimWrapper':
        ow_cfg['type'] = 'OptimWrapper'
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type=ow_cfg.pop('constructor'),
            optim_wrapper_cfg=ow_cfg,
            paramwise_cfg=ow_cfg.pop('paramwise_cfg', None)))
    optim = ctor(model)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in optim.optimizer.param_groups
               for p in g['params']) == n_params
    for sched in cfg.param_scheduler:
        PARAM_SCHEDULERS.build(dict(sched, optimizer=optim.optimizer))
    Compose(cfg.train_dataloader.dataset.pipeline)
    # D-FINE's hooks are default hooks by name (overridable per key); each
    # builds, and custom_hooks holds no second EMA / stop-aug hook
    built = {
        k: HOOKS.build({
            kk: v
            for kk, v in h.items() if kk != 'priority'
        })
        for k, h in cfg.default_hooks.items() if k in ('ema', 'stop_aug')
    }
    assert {k: type(h).__name__ for k, h in built.items()} == \
        {'ema': 'EMAHook', 'stop_aug': 'DFINEStopAugHook'}
    custom = [h['type'] for h in cfg.get('custom_hooks', [])]
    assert 'EMAHook' not in custom and 'DFINEStopAugHook' not in custom

    name = _name(path)
    if name not in OFFICIAL:
        return
    (lr, bb_lr, wd, epochs, stop, repeat, total_bs, ema_warm, lr_warm,
     style) = OFFICIAL[name]
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1)
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay,
            tuple(opt.betas)) == ('AdamW', lr, wd, (0.9, 0.999))
    assert cfg.optim_wrapper.paramwise_cfg.backbone_lr == bb_lr
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.default_hooks.stop_aug.stop_epoch == stop
    ema = cfg.default_hooks.ema
    assert (ema.ema_type, ema.decay, ema.warmups, ema.update_buffers) == \
        ('DFINEModelEMA', 0.9999, ema_warm, True)
    if lr_warm:
        assert [(s.type, s.start_factor, s.end, s.by_epoch)
                for s in cfg.param_scheduler] == \
            [('LinearLR', 1 / lr_warm, lr_warm, False)]
    else:
        assert cfg.param_scheduler == []
    augs = cfg.model.data_preprocessor.get('batch_augments') or []
    if repeat is None:
        assert augs == []
    else:
        assert [(a.type, a.base_size, a.base_size_repeat) for a in augs] == \
            [('DFINEBatchMultiScaleResize', 640, repeat)]
    assert cfg.train_dataloader.batch_size * 4 == total_bs
    assert cfg.auto_scale_lr.base_batch_size == total_bs
    assert cfg.train_dataloader.drop_last
    assert cfg.train_dataloader.batch_sampler is None
    if 'obj2coco' in name:
        assert cfg.custom_hooks == [
            dict(type='ClassHeadAdaptHook', class_map='obj365_to_coco')
        ]
    if 'custom' in name:
        assert cfg.custom_hooks == [dict(type='ClassHeadAdaptHook')]
        assert cfg.model.bbox_head.num_classes == len(cfg.classes)
        assert cfg.train_dataloader.dataset.metainfo.classes == cfg.classes
        assert cfg.load_from


# official HGNetv2 `name` per size letter; `pretrained: True` in every
# official COCO / Objects365 / obj2coco / custom config (spec section 1.2)
OFFICIAL_ARCH = dict(n='B0', s='B0', m='B2', l='B4', x='B5')


@pytest.mark.parametrize('path', CONFIGS, ids=_name)
def test_backbone_initialisation(path):
    """Training from data starts from the ImageNet-pretrained HGNetV2 file of
    its arch (a relative path: nothing is downloaded); fine-tuning configs
    take every weight from ``load_from`` instead; the toy and ResNet-50
    configs start from scratch."""
    name = _name(path)
    cfg = Config.fromfile(path)
    init_cfg = cfg.model.backbone.get('init_cfg')
    if name.endswith(('_coco', '_obj365')) and 'hgnetv2' in name:
        arch = OFFICIAL_ARCH[name.split('_')[2]]
        assert cfg.model.backbone.arch == arch
        assert init_cfg == dict(
            type='Pretrained',
            checkpoint=f'checkpoints/PPHGNetV2_{arch}_stage1.pth')
    else:
        assert init_cfg is None, name
        if name.endswith(('_custom', '_obj2coco')):
            assert 'load_from' in cfg, name


def test_pretrained_backbone_file_loads_through_the_detector(tmp_path):
    """``dfine_hgnetv2_n_coco.py`` with its init_cfg pointed at an
    official-style file (plain backbone state_dict, no ``backbone.`` prefix):
    ``init_weights`` of the whole detector puts exactly those values into the
    backbone."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'dfine', 'dfine_hgnetv2_n_coco.py'))
    torch.manual_seed(0)
    src = MODELS.build(dict(cfg.model.backbone, init_cfg=None))
    with torch.no_grad():
        for t in src.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t))
    path = str(tmp_path / 'PPHGNetV2_B0_stage1.pth')
    torch.save(src.state_dict(), path)
    # what `--cfg-options model.backbone.init_cfg.checkpoint=PATH` does
    # (README)
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': path})
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint=path)
    model = MODELS.build(cfg.model)
    model.init_weights()
    got = model.backbone.state_dict()
    for key, value in src.state_dict().items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize(
    'override,ema_decays,stop_epochs',
    [
        ('', [0.9999], [148]),
        ('default_hooks = dict(stop_aug=dict(stop_epoch=3), '
         'ema=dict(decay=0.99))', [0.99], [3]),
        # MMEngine accepts `None` only for its own default-hook names, so a run
        # without EMA re-lists the default hooks it keeps
        ("default_hooks = dict(_delete_=True, logger=dict(type='LoggerHook'), "
         "stop_aug=dict(type='DFINEStopAugHook', stop_epoch=5))", [], [5]),
    ])
def test_hooks_are_overridden_by_name(tmp_path, override, ema_decays,
                                      stop_epochs):
    """A user config changes or drops D-FINE's hooks by name, and the runner
    registers each exactly once (no second EMA from a re-declared list)."""
    from mmengine.runner import Runner
    base = osp.join(ROOT, 'configs', 'dfine', 'dfine_hgnetv2_n_coco.py')
    path = tmp_path / 'user_cfg.py'
    path.write_text(f'_base_ = {base!r}\n{override}\n')
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(tmp_path / 'wd')
    cfg.model.backbone.init_cfg = None
    runner = Runner.from_cfg(cfg)
    emas = [h for h in runner.hooks if type(h).__name__ == 'EMAHook']
    stops = [h for h in runner.hooks if type(h).__name__ == 'DFINEStopAugHook']
    assert [
        h.ema_cfg['momentum']
        if 'momentum' in h.ema_cfg else h.ema_cfg['decay'] for h in emas
    ] == ema_decays
    assert [h.stop_epoch for h in stops] == stop_epochs
