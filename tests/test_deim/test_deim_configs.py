"""The DEIM-D-FINE configs resolve to DEIM's settings.

Expected values are copied from DEIM's yml configs (ShihuaHuang95/DEIM at
a9aa4adce6b5); each is commented with the file and key it comes from
(``deim.yml`` = ``configs/base/deim.yml``; ``deim_{v}`` =
``configs/deim_dfine/deim_hgnetv2_{v}_coco.yml``; ``dfine_{v}`` =
``configs/deim_dfine/dfine_hgnetv2_{v}_coco.yml``).
"""
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(ROOT, 'configs', 'deim_dfine')

EXPECTED = {
    # v: lr (deim_v optimizer.lr), backbone lr (deim_v optimizer.params[0].lr),
    #    weight decay (deim_v optimizer.weight_decay), epochs (deim_v
    #    epoches), policy (deim_v train_dataloader.dataset.transforms.policy
    #    .epoch; mixup_epochs = its first two), flat_epoch (deim_v),
    #    no_aug_epoch (deim_v), lr_gamma (deim_v, else deim.yml 0.5),
    #    base_size_repeat (dfine_v collate_fn.base_size_repeat; deim_n: ~)
    'n': (8e-4, 4e-4, 1e-4, 160, [4, 78, 148], 7800, 12, 1.0, None),
    's': (4e-4, 2e-4, 1e-4, 132, [4, 64, 120], 64, 12, 0.5, 20),
    'm': (4e-4, 4e-5, 1e-4, 102, [4, 49, 90], 49, 12, 0.5, 6),
    'l': (5e-4, 2.5e-5, 1.25e-4, 58, [4, 29, 50], 29, 8, 0.5, 4),
    'x': (5e-4, 5e-6, 1.25e-4, 58, [4, 29, 50], 29, 8, 0.5, 3),
}


def _cfg(v):
    return Config.fromfile(osp.join(CFG, f'deim_hgnetv2_{v}_coco.py'))


@pytest.mark.parametrize('v', sorted(EXPECTED))
def test_resolves_to_deim_values(v):
    lr, blr, wd, epochs, policy, flat, no_aug, gamma, repeat = EXPECTED[v]
    cfg = _cfg(v)
    m = cfg.model
    # deim.yml DEIMCriterion: losses [mal, boxes, local], gamma 1.5,
    # weight_dict loss_mal 1 (mal_alpha not set: None = weight 1)
    assert m.bbox_head.loss_cls.to_dict() == dict(
        type='MatchabilityAwareLoss', alpha=1.0, gamma=1.5, loss_weight=1.0)
    # deim.yml weight_dict: loss_bbox 5, loss_giou 2, loss_fgl 0.15,
    # loss_ddf 1.5 (unchanged from D-FINE)
    assert (m.bbox_head.loss_bbox.loss_weight,
            m.bbox_head.loss_iou.loss_weight, m.bbox_head.loss_fgl.loss_weight,
            m.bbox_head.loss_ddf.loss_weight) == (5.0, 2.0, 0.15, 1.5)
    # deim.yml DFINETransformer: activation silu, mlp_act silu
    assert (m.decoder.activation, m.decoder.mlp_act) == ('silu', 'silu')
    # deim.yml HGNetv2: freeze_at -1, freeze_norm False
    assert m.backbone.frozen_stem is False and m.backbone.freeze_norm is False
    # deim_v optimizer
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.optimizer.weight_decay == wd
    assert cfg.optim_wrapper.paramwise_cfg.backbone_lr == blr
    # deim_v epoches
    assert cfg.train_cfg.max_epochs == epochs
    # policy epochs; collate_fn mixup_epochs [e0, e1] and stop_epoch e2
    hook = cfg.default_hooks.stop_aug
    assert hook.type == 'DenseO2OPolicyHook'
    assert list(hook.policy_epochs) == policy
    assert 'stop_epoch' not in hook and hook.get('mixup_epochs') is None
    # deim.yml collate_fn mixup_prob 0.5, before the multi-scale resize
    augs = m.data_preprocessor.batch_augments
    assert augs[0] == dict(type='DEIMBatchMixUp', prob=0.5)
    if repeat is None:
        assert len(augs) == 1
    else:
        assert augs[1].type == 'DFINEBatchMultiScaleResize'
        assert augs[1].base_size_repeat == repeat
    # lr schedule: deim.yml warmup_iter 2000 (quadratic in DEIM's
    # flat_cosine_schedule), flat until flat_epoch, cosine to lr_gamma * lr
    # until epochs - no_aug_epoch
    warm = cfg.param_scheduler[0]
    assert (warm.type, warm.by_epoch, warm.begin,
            warm.end) == ('QuadraticWarmupLR', False, 0, 2000)
    if flat >= epochs:
        assert gamma == 1.0 and len(cfg.param_scheduler) == 1
    else:
        cos = cfg.param_scheduler[1]
        assert cos.type == 'CosineAnnealingLR' and cos.by_epoch
        assert (cos.begin, cos.end) == (flat, epochs - no_aug)
        assert cos.eta_min_ratio == gamma and cos.convert_to_iter_based


@pytest.mark.parametrize('v', sorted(EXPECTED))
def test_dense_o2o_pipeline(v):
    names = [t.type for t in _cfg(v).train_dataloader.dataset.pipeline]
    i = names.index('DEIMMosaic')
    # deim.yml ops order: Mosaic, RandomPhotometricDistort, RandomZoomOut,
    # RandomIoUCrop, SanitizeBoundingBoxes, RandomHorizontalFlip, Resize
    assert names[i:i + 7] == [
        'DEIMMosaic', 'RandomPhotometricDistort', 'SkipAfterMosaic',
        'SanitizeBoundingBoxes', 'RandomFlip', 'Resize',
        'SanitizeBoundingBoxes'
    ]
    mosaic = _cfg(v).train_dataloader.dataset.pipeline[i]
    # deim.yml Mosaic: output_size 320, rotation_range 10, translation_range
    # [0.1, 0.1], scaling_range [0.5, 1.5], fill_value 0; mosaic_prob 0.5;
    # max_cached_images 50, random_pop True
    assert (mosaic.output_size, mosaic.rotation_range,
            tuple(mosaic.translation_range), tuple(mosaic.scaling_range),
            mosaic.fill_value, mosaic.prob, mosaic.max_cached_images,
            mosaic.random_pop) == (320, 10, (0.1, 0.1), (0.5, 1.5), 0, 0.5, 50,
                                   True)


def test_only_the_deim_fields_differ_from_dfine():
    """The model differs from D-FINE's only in the DEIM switches."""
    for v in EXPECTED:
        deim = _cfg(v).model.to_dict()
        dfine = Config.fromfile(
            osp.join(ROOT, 'configs', 'dfine',
                     f'dfine_hgnetv2_{v}_coco.py')).model.to_dict()
        for key in ('neck', 'in_channels', 'feat_strides', 'num_queries',
                    'dn_cfg', 'eval_spatial_size'):
            assert deim.get(key) == dfine.get(key), (v, key)
        assert deim['decoder']['layer_cfg'] == dfine['decoder']['layer_cfg']
        assert deim['backbone']['arch'] == dfine['backbone']['arch']


@pytest.mark.parametrize(
    'name', ['custom/deim_hgnetv2_s_custom.py', 'toy/deim_hgnetv2_n_toy.py'])
def test_other_configs_build(name):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    cfg = Config.fromfile(osp.join(CFG, name))
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert type(model.bbox_head.loss_cls).__name__ == 'MatchabilityAwareLoss'
    assert type(model.decoder.layers[0].activation).__name__ == 'SiLU'
    assert cfg.default_hooks.stop_aug.type == 'DenseO2OPolicyHook'
    if name.startswith('custom'):
        assert cfg.train_cfg.max_epochs == 220
        assert list(cfg.default_hooks.stop_aug.policy_epochs) == [4, 104, 200]


def test_model_switches_reach_the_modules():
    import torch.nn as nn
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    model = MODELS.build(_cfg('l').model)
    silu = [
        model.decoder.layers[0].activation, model.decoder.query_pos_head.act,
        model.bbox_head.reg_branches[0].act,
        model.bbox_head.pre_reg_branch.act, model.bbox_head.enc_reg_branch.act,
        model.bbox_head.lqe_layers[0].reg_conf.act
    ]
    assert all(isinstance(a, nn.SiLU) for a in silu)
    # L: BatchNorm trained, not frozen (D-FINE-L freezes it)
    bns = [
        m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)
    ]
    assert bns and all(p.requires_grad for b in bns for p in b.parameters())
    stem = [p.requires_grad for p in model.backbone.stem.parameters()]
    assert stem and all(stem)
