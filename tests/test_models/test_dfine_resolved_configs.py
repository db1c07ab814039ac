"""Every shipped D-FINE config resolves to the official values.

The reference is ``../shared/docs/official_resolved_configs.json``: the
resolved YAML of every official D-FINE config (Peterande/D-FINE), so this
test reads the real source, not a snapshot of our own earlier output. Each
config under ``configs/dfine`` and ``configs/dfine_mixed`` is loaded with
``Config.fromfile`` (every ``_base_`` merged), its values are read in the
official vocabulary by :func:`ours` (values the detector derives, such as
the decoder's ``in_channels`` and ``num_levels``, derived by the detector's
own fill helpers) and compared with the same keys read
from the official file by :func:`official`:

* ``dfine_hgnetv2_{v}_{coco,obj365,obj2coco,custom}.py``: the official
  config of the same name, every key (custom: the class count is the user's,
  the official 777 is a placeholder);
* ``toy/dfine_hgnetv2_n_toy.py``: D-FINE-N COCO except the deviations listed
  in :data:`TOY_DEVIATIONS` (each written at the top of the config), which
  must each really differ;
* ``dfine_mixed/*``: D-FINE-L COCO except the backbone and the channels the
  neck takes from it.

Official constructor defaults (for keys an official YAML leaves out) are in
:data:`OFFICIAL_DEFAULTS` (official ``HGNetv2.__init__`` /
``DFINETransformer.__init__``).
"""
import glob
import os.path as osp

import pytest
from dfine_model_utils import resolved_model_cfg
from mmengine.config import Config

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
OFFICIAL_JSON = osp.join(
    osp.dirname(ROOT), 'shared', 'docs', 'official_resolved_configs.json')

pytestmark = pytest.mark.skipif(
    not osp.isfile(OFFICIAL_JSON),
    reason=f'{OFFICIAL_JSON} is absent (the official resolved configs live '
    'in ../shared, beside the checkout)')

#: official constructor defaults of keys some YAML files leave out
OFFICIAL_DEFAULTS = {
    'HGNetv2':
    dict(use_lab=False, freeze_stem_only=True, freeze_at=0, freeze_norm=True),
    'DFINETransformer':
    dict(nhead=8, dim_feedforward=1024, dropout=0.0),
}

#: keys of the toy config that differ from D-FINE-N COCO on purpose
TOY_DEVIATIONS = {
    'num_classes', 'eval_spatial_size', 'num_queries', 'num_denoising',
    'num_top_queries', 'lr', 'backbone_lr', 'warmup_iters', 'ema_decay',
    'ema_warmups', 'epochs', 'stop_epoch', 'total_batch_size', 'batch_per_gpu',
    'use_amp'
}
#: keys of a mixed config that follow its (MMDetection) backbone
MIXED_BACKBONE_KEYS = {
    'backbone', 'return_idx', 'use_lab', 'frozen_stem', 'freeze_norm',
    'encoder_in_channels'
}


def _configs():
    paths = glob.glob(
        osp.join(ROOT, 'configs', 'dfine*', '**', '*.py'), recursive=True)
    return sorted(
        osp.relpath(p, ROOT) for p in paths
        if '/_base_/' not in p and '/dfine_mixed/' in p or (
            '/_base_/' not in p and '/dfine/' in p))


def official(off: dict) -> dict:
    """The compared values of one official resolved config."""
    bb = dict(OFFICIAL_DEFAULTS['HGNetv2'], **off['HGNetv2'])
    enc = off['HybridEncoder']
    dec = dict(OFFICIAL_DEFAULTS['DFINETransformer'],
               **off['DFINETransformer'])
    crit = off['DFINECriterion']
    weights, matcher = crit['weight_dict'], crit['matcher']
    opt = off['optimizer']
    train = off['train']
    assert dec['layer_scale'] == 1 and dec['cross_attn_method'] == \
        dec['query_select_method'] == 'default', 'not a D-FINE config'
    assert off['use_ema'] and off['use_focal_loss']
    return dict(
        num_classes=off['num_classes'],
        eval_spatial_size=list(off['eval_spatial_size']),
        backbone=bb['name'],
        return_idx=list(bb['return_idx']),
        use_lab=bb['use_lab'],
        frozen_stem=bb['freeze_at'] >= 0 and bb['freeze_stem_only'],
        freeze_norm=bb['freeze_norm'],
        encoder_in_channels=list(enc['in_channels']),
        feat_strides=list(enc['feat_strides']),
        encoder_dims=enc['hidden_dim'],
        use_encoder_idx=list(enc['use_encoder_idx']),
        num_encoder_layers=enc['num_encoder_layers'],
        encoder_heads=enc['nhead'],
        encoder_ffn=enc['dim_feedforward'],
        encoder_dropout=enc['dropout'],
        enc_act=enc['enc_act'],
        expansion=enc['expansion'],
        depth_mult=enc['depth_mult'],
        act=enc['act'],
        decoder_in_channels=list(dec['feat_channels']),
        decoder_strides=list(dec['feat_strides']),
        decoder_dims=dec['hidden_dim'],
        num_levels=dec['num_levels'],
        num_layers=dec['num_layers'],
        eval_idx=dec['eval_idx'],
        num_queries=dec['num_queries'],
        num_denoising=dec['num_denoising'],
        label_noise_ratio=dec['label_noise_ratio'],
        box_noise_scale=dec['box_noise_scale'],
        reg_max=dec['reg_max'],
        criterion_reg_max=crit['reg_max'],
        reg_scale=dec['reg_scale'],
        num_points=list(dec['num_points']),
        decoder_heads=dec['nhead'],
        decoder_ffn=dec['dim_feedforward'],
        decoder_dropout=dec['dropout'],
        num_top_queries=off['DFINEPostProcessor']['num_top_queries'],
        loss_weights=dict(weights),
        focal_alpha=crit['alpha'],
        focal_gamma=crit['gamma'],
        matcher_weights=dict(matcher['weight_dict']),
        matcher_alpha=matcher['alpha'],
        matcher_gamma=matcher['gamma'],
        optimizer=opt['type'],
        lr=opt['lr'],
        betas=list(opt['betas']),
        weight_decay=opt['weight_decay'],
        backbone_lr=opt['params'][0]['lr'],
        warmup_iters=off['lr_warmup_scheduler']['warmup_duration'],
        ema_decay=off['ema']['decay'],
        ema_warmups=off['ema']['warmups'],
        use_amp=off['use_amp'],
        epochs=off['epochs'],
        clip_max_norm=off['clip_max_norm'],
        total_batch_size=train['total_batch_size'],
        # the official totals are for 4 GPUs
        batch_per_gpu=train['total_batch_size'] // 4,
        stop_epoch=train['policy']['epoch'],
        multiscale_repeat=train['collate_fn']['base_size_repeat'],
        multiscale_base=train['collate_fn']['base_size'])


def ours(cfg: Config) -> dict:
    """The same values read from a resolved plugin config (the derived ones
    as ``DFINE`` derives them, :func:`resolved_model_cfg`)."""
    m = resolved_model_cfg(cfg)
    bb, neck, dec, head = m.backbone, m.neck, m.decoder, m.bbox_head
    layer = dec.layer_cfg
    hooks = cfg.default_hooks
    warm = [s for s in cfg.param_scheduler if s.type == 'LinearLR']
    assert len(warm) == len(cfg.param_scheduler) <= 1, cfg.param_scheduler
    augs = m.data_preprocessor.get('batch_augments') or []
    assert len(augs) <= 1 and all(a.type == 'DFINEBatchMultiScaleResize'
                                  for a in augs), augs
    return dict(
        num_classes=head.num_classes,
        eval_spatial_size=list(m.eval_spatial_size),
        backbone=bb.get('arch'),
        return_idx=list(bb.out_indices),
        use_lab=bb.get('use_lab', False),
        frozen_stem=bb.get('frozen_stem', False),
        freeze_norm=bb.get('freeze_norm', False),
        encoder_in_channels=list(neck.in_channels),
        feat_strides=list(m.feat_strides),
        encoder_dims=neck.embed_dims,
        use_encoder_idx=list(neck.use_encoder_idx),
        num_encoder_layers=neck.num_encoder_layers,
        encoder_heads=neck.num_heads,
        encoder_ffn=neck.feedforward_channels,
        encoder_dropout=neck.dropout,
        enc_act=neck.enc_act,
        expansion=neck.expansion,
        depth_mult=neck.depth_mult,
        act=neck.act,
        decoder_in_channels=list(m.in_channels),
        decoder_strides=list(m.feat_strides),
        decoder_dims=layer.embed_dims,
        num_levels=layer.num_levels,
        num_layers=dec.num_layers,
        eval_idx=dec.eval_idx,
        num_queries=m.num_queries,
        num_denoising=m.dn_cfg.num_denoising,
        label_noise_ratio=m.dn_cfg.label_noise_ratio,
        box_noise_scale=m.dn_cfg.box_noise_scale,
        reg_max=head.bbox_coder.reg_max,
        criterion_reg_max=head.bbox_coder.reg_max,
        reg_scale=head.bbox_coder.reg_scale,
        num_points=list(layer.num_points),
        decoder_heads=layer.num_heads,
        decoder_ffn=layer.feedforward_channels,
        decoder_dropout=layer.dropout,
        num_top_queries=m.test_cfg.max_per_img,
        loss_weights=dict(
            loss_vfl=head.loss_cls.loss_weight,
            loss_bbox=head.loss_bbox.loss_weight,
            loss_giou=head.loss_iou.loss_weight,
            loss_fgl=head.loss_fgl.loss_weight,
            loss_ddf=head.loss_ddf.loss_weight),
        focal_alpha=head.loss_cls.alpha,
        focal_gamma=head.loss_cls.gamma,
        matcher_weights=dict(
            cost_class=head.assigner.cost_class,
            cost_bbox=head.assigner.cost_bbox,
            cost_giou=head.assigner.cost_giou),
        matcher_alpha=head.assigner.alpha,
        matcher_gamma=head.assigner.gamma,
        optimizer=cfg.optim_wrapper.optimizer.type,
        lr=cfg.optim_wrapper.optimizer.lr,
        betas=list(cfg.optim_wrapper.optimizer.betas),
        weight_decay=cfg.optim_wrapper.optimizer.weight_decay,
        backbone_lr=cfg.optim_wrapper.paramwise_cfg.backbone_lr,
        warmup_iters=warm[0].end if warm else 0,
        ema_decay=hooks.ema.decay,
        ema_warmups=hooks.ema.warmups,
        use_amp=cfg.optim_wrapper.type == 'AmpOptimWrapper',
        epochs=cfg.train_cfg.max_epochs,
        clip_max_norm=cfg.optim_wrapper.clip_grad.max_norm,
        total_batch_size=cfg.auto_scale_lr.base_batch_size,
        batch_per_gpu=cfg.train_dataloader.batch_size,
        stop_epoch=hooks.stop_aug.stop_epoch,
        multiscale_repeat=augs[0].base_size_repeat if augs else None,
        multiscale_base=augs[0].base_size if augs else 640)


def _reference(rel):
    """(official config name, keys not compared, keys that must differ)."""
    name = osp.splitext(osp.basename(rel))[0]
    if '/dfine_mixed/' in rel:
        return 'configs/dfine/dfine_hgnetv2_l_coco.yml', \
            MIXED_BACKBONE_KEYS, set()
    if '/toy/' in rel:
        return 'configs/dfine/dfine_hgnetv2_n_coco.yml', set(), \
            TOY_DEVIATIONS
    folder = {
        'custom': 'custom/',
        'obj365': 'objects365/',
        'obj2coco': 'objects365/',
        'coco': ''
    }[name.split('_')[-1]]
    skip = {'num_classes'} if name.endswith('_custom') else set()
    return f'configs/dfine/{folder}{name}.yml', skip, set()


@pytest.fixture(scope='module')
def official_configs():
    import json
    with open(OFFICIAL_JSON) as f:
        return json.load(f)


def test_every_config_is_compared():
    names = [osp.basename(p) for p in _configs()]
    assert len(names) >= 25, names
    for v in 'nsmlx':
        for kind in ('coco', 'obj365', 'obj2coco', 'custom'):
            assert f'dfine_hgnetv2_{v}_{kind}.py' in names


@pytest.mark.parametrize('rel', _configs())
def test_resolved_config_matches_official(rel, official_configs):
    ref_name, skip, deviations = _reference(rel)
    assert ref_name in official_configs, ref_name
    ref = official(official_configs[ref_name])
    got = ours(Config.fromfile(osp.join(ROOT, rel)))
    assert set(got) == set(ref)
    wrong = {
        k: (got[k], ref[k])
        for k in ref if k not in skip | deviations and got[k] != ref[k]
    }
    assert not wrong, f'{rel} vs {ref_name} (ours, official): {wrong}'
    same = sorted(k for k in deviations if got[k] == ref[k])
    assert not same, f'{rel}: listed as deviations but official: {same}'
