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
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    '../../_base_/datasets/toy.py'
]

num_classes = 3
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

# the toy data (configs/_base_/datasets/toy.py, listed beside mmdet's base)
data_root = _base_.toy_data_root
train_pipeline = _base_.toy_train_pipeline
test_pipeline = _base_.toy_test_pipeline
train_dataloader = _base_.toy_train_dataloader
val_dataloader = test_dataloader = _base_.toy_val_dataloader
val_evaluator = test_evaluator = _base_.toy_val_evaluator

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
