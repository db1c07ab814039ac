"""Shared inputs of the mix-and-match tests (see ``conftest.py``).

A tiny config inherits one of ``configs/dfine_mixed/*.py`` unchanged in type
(same backbone class, neck, decoder and head) and shrinks only sizes: 64x64
inputs, 10 queries, 64-d encoder/decoder with 2 decoder layers, and small
backbone widths/depths given by ``TINY_BACKBONES``; the neck's ``in_channels``
follow the tiny backbone's channels (the wiring rule of the configs).

Also the helpers of the DINO / Deformable-DETR + FDR tests: a shrunk toy
config on the session toy set (:func:`small_toy_cfg`), a built and
initialised model (:func:`build_detector`), one fixed batch
(:func:`first_batch`), the class-loss check shared by both
(:func:`check_class_loss_terms`).
"""
import copy
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MIXED_DIR = osp.join(ROOT, 'configs', 'dfine_mixed')

# config file -> (tiny backbone overrides, channels of its out_indices maps)
TINY_BACKBONES = {
    'dfine_r50_coco.py': (dict(base_channels=8), [64, 128, 256]),
    'dfine_swin-t_coco.py':
    (dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2,
                                                         4]), [32, 64, 128]),
    'dfine_pvtv2-b0_coco.py': (dict(embed_dims=16,
                                    num_layers=[1, 1, 1, 1]), [32, 80, 128]),
    'dfine_cspnext-l_coco.py': (dict(widen_factor=0.125,
                                     deepen_factor=0.167), [32, 64, 128]),
}

TINY_CONFIG = """\
# tiny variant of {name}
# (written by tests/test_mix_and_match/mixed_fixtures.py)
_base_ = {base!r}
data_root = {data_root!r}
img = 64
classes = ('square', 'circle', 'triangle')
model = dict(
    data_preprocessor=dict(batch_augments=None),
    backbone=dict(init_cfg=None, **{backbone!r}),
    neck=dict(in_channels={in_channels!r}, embed_dims=64,
              feedforward_channels=128, expansion=0.34, depth_mult=0.5),
    num_queries=10,
    eval_spatial_size=(img, img),
    dn_cfg=dict(num_denoising=10),
    decoder=dict(num_layers=2, layer_cfg=dict(embed_dims=64, num_heads=4,
                                              feedforward_channels=128)),
    bbox_head=dict(num_classes=3),
    test_cfg=dict(max_per_img=10))
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SanitizeBoundingBoxes', min_size=1, drop_ignored=True),
    dict(type='Resize', scale=(img, img), keep_ratio=False, backend='pillow'),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='Resize', scale=(img, img), keep_ratio=False, backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(
    _delete_=True, batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CocoDataset', data_root=data_root,
                 metainfo=dict(classes=classes),
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=False),
                 pipeline=train_pipeline))
val_dataloader = dict(
    _delete_=True, batch_size=4, num_workers=0, persistent_workers=False,
    drop_last=False, sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CocoDataset', data_root=data_root,
                 metainfo=dict(classes=classes),
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', metric='bbox', format_only=False,
                     ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
"""


def small_toy_cfg(path, data_root, overrides):
    """``path`` (a toy config) with ``overrides`` (``merge_from_dict`` keys)
    merged in, reading the toy set at ``data_root``."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(overrides)
    root = data_root.rstrip('/') + '/'
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.dataset.data_root = root
    cfg.val_evaluator.ann_file = root + 'annotations/instances_val.json'
    return cfg


def build_detector(cfg, seed=0):
    """``cfg.model`` built (from a copy: mmdet's DINO fills ``dn_cfg`` in
    place) and initialised under ``torch.manual_seed(seed)``."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import dfine_mmdet  # noqa: F401
    register_all_modules(init_default_scope=True)
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    return model


def first_batch(cfg_loader):
    """The first batch of a dataloader config, seeded (RandomFlip draws from
    numpy's global RNG)."""
    from mmengine.runner import Runner, set_random_seed
    set_random_seed(0)
    return next(iter(Runner.build_dataloader(cfg_loader, seed=0)))


def focal_loss_cfg(loss_weight):
    """mmdet's sigmoid FocalLoss as DINO (weight 1) and Deformable DETR
    (weight 2) configure it."""
    return dict(
        type='FocalLoss',
        use_sigmoid=True,
        gamma=2.0,
        alpha=0.25,
        loss_weight=loss_weight)


def check_class_loss_terms(cfg, suffixes, focal_weight):
    """Train-mode losses of ``cfg`` (the FDR configs' VFL) and of ``cfg``
    with mmdet's FocalLoss (``loss_weight=focal_weight``): the class terms
    are ``loss_vfl + s`` and ``loss_cls + s`` for every ``s`` in
    ``suffixes``, every loss is finite, and ``predict`` scores lie in
    [0, 1]."""
    import math

    import torch
    for loss_cls, key in ((None, 'loss_vfl'), (focal_loss_cfg(focal_weight),
                                               'loss_cls')):
        cfg = copy.deepcopy(cfg)
        if loss_cls is not None:
            cfg.model.bbox_head.loss_cls = loss_cls
        model = build_detector(cfg)
        batch = first_batch(cfg.train_dataloader)
        data = model.data_preprocessor(batch, True)
        model.train()
        losses = model.loss(data['inputs'], data['data_samples'])
        cls_terms = {
            k
            for k in losses if k.startswith(('loss_vfl', 'loss_cls'))
        }
        assert cls_terms == {key + s for s in suffixes}, sorted(losses)
        assert all(math.isfinite(float(v.detach())) for v in losses.values())
        model.eval()
        with torch.no_grad():
            results = model.predict(data['inputs'], data['data_samples'])
        assert all(((r.pred_instances.scores >= 0)
                    & (r.pred_instances.scores <= 1)).all() for r in results)
