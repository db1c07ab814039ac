# Plain mmdet DINO (4 scales) at toy size, on the synthetic toy set of
# tools/make_toy_dataset.py (3 classes), for the CPU comparison
# tools/experiments/dino_fdr_toy.py against dino-4scale_r18_fdr_toy.py (same
# settings + FDR/GO-LSD).  Not a recipe for real data.
#
#     python tools/make_toy_dataset.py --out data/toy
#     python tools/experiments/dino_fdr_toy.py --iters 300
#
# What differs from mmdet's dino-4scale_r50_8xb2-12e_coco.py, and why:
#   ResNet-18 at half width (base         no download; CPU time
#     channels 32), from scratch, BN
#     trained (R-50 ImageNet, frozen
#     BN/stem)
#   128-d, 2 encoder / 3 decoder layers,   CPU time; 128x128 inputs give 340
#     512-d FFN, 60 queries, 30 DN         memory tokens at strides 8-64
#     queries (256-d, 6 / 6, 2048, 900,
#     100)
#   input 128x128, flip only               toy images are 128-192 px
#   AdamW lr 5e-4 everywhere, 50 iters     from scratch, budget of minutes
#     warmup (1e-4, backbone x0.1)
# Losses, matcher costs, denoising, grad clip 0.1 are DINO's.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'

data_root = 'data/toy/'
classes = ('square', 'circle', 'triangle')
num_classes = 3
img_size = 128
embed_dims = 128

model = dict(
    num_queries=60,
    backbone=dict(
        depth=18,
        base_channels=32,
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(
        in_channels=[64, 128, 256],
        out_channels=embed_dims,
        norm_cfg=dict(type='GN', num_groups=32)),
    encoder=dict(
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=8),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=512))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=8),
            cross_attn_cfg=dict(embed_dims=embed_dims),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=512))),
    positional_encoding=dict(num_feats=embed_dims // 2),
    bbox_head=dict(num_classes=num_classes, embed_dims=embed_dims),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=30)),
    test_cfg=dict(max_per_img=100))

backend_args = None
train_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='Resize',
        scale=(img_size, img_size),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        backend_args=backend_args),
    dict(
        type='Resize',
        scale=(img_size, img_size),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox',
    format_only=False)
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=1e-4),
    paramwise_cfg=dict(_delete_=True))
max_iters = 300
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1.0 / 50,
        end_factor=1.0,
        by_epoch=False,
        begin=0,
        end=50)
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=8)
