# mmdet's two-stage Deformable DETR with box refinement at toy size, on the
# synthetic toy set of tools/make_toy_dataset.py (3 classes), for the CPU
# comparison tools/experiments/dino_fdr_toy.py (models DDETR / DDETR+FDR)
# against deformable-detr-refine-twostage_r18_fdr_toy.py (same settings +
# FDR/GO-LSD).  Not a recipe for real data.
#
#     python tools/experiments/dino_fdr_toy.py --iters 300 \
#         --models DDETR DDETR+FDR
#
# Same toy recipe as configs/dino_fdr/toy/dino-4scale_r18_toy.py (ResNet-18
# at half width from scratch, 2 encoder / 3 decoder layers, 512-d FFN, 60
# queries, 128x128, batch 8, AdamW 5e-4, 50 warmup iterations), except the
# width: 256-d, Deformable DETR's, because mmdet's
# DeformableDETR.get_proposal_pos_embed embeds each proposal coordinate with
# a fixed 128 features, which pos_trans_fc (embed_dims * 2 inputs) only
# accepts at 256-d.  Losses, matcher costs, dropout 0.1 and grad clip 0.1
# are Deformable DETR's.
_base_ = [
    'mmdet::deformable_detr/'
    'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    '../../_base_/datasets/toy.py'
]

num_classes = 3

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
