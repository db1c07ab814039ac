# mmdet's two-stage Deformable DETR with box refinement at toy size, on the
# synthetic toy set of tools/make_toy_dataset.py (3 classes), for the CPU
# comparison tools/experiments/dino_fdr_toy.py (models DDETR / DDETR+FDR)
# against deformable-detr-refine-twostage_r18_fdr_toy.py (same settings +
# FDR/GO-LSD).  Not a recipe for real data.
#
#     python tools/experiments/dino_fdr_toy.py --iters 300 --models DDETR DDETR+FDR
#
# Same toy recipe as configs/dino_fdr/toy/dino-4scale_r18_toy.py (ResNet-18
# at half width from scratch, 2 encoder / 3 decoder layers, 512-d FFN, 60
# queries, 128x128, batch 8, AdamW 5e-4, 50 warmup iterations), except the
# width: 256-d, Deformable DETR's, because mmdet's
# DeformableDETR.get_proposal_pos_embed embeds each proposal coordinate with
# a fixed 128 features, which pos_trans_fc (embed_dims * 2 inputs) only
# accepts at 256-d.  Losses, matcher costs, dropout 0.1 and grad clip 0.1
# are Deformable DETR's.
_base_ = 'mmdet::deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py'  # noqa: E501

data_root = 'data/toy/'
classes = ('square', 'circle', 'triangle')
num_classes = 3
img_size = 128

model = dict(
    num_queries=60,
    backbone=dict(
        depth=18,
        base_channels=32,
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256]),
    encoder=dict(
        num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=512))),
    decoder=dict(
        num_layers=3, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=512))),
    bbox_head=dict(num_classes=num_classes),
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
