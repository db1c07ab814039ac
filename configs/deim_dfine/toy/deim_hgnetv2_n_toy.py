# DEIM-D-FINE-N on the synthetic toy set (tools/make_toy_dataset.py), for the
# CPU learning benchmark tools/experiments/deim_toy.py (D-FINE recipe vs DEIM
# recipe at equal iterations).
#
#     python tools/make_toy_dataset.py --out data/toy
#     python tools/train.py configs/deim_dfine/toy/deim_hgnetv2_n_toy.py
#
# = configs/dfine/toy/dfine_hgnetv2_n_toy.py (its toy deviations from the
# official recipe: 128 px, 60 queries, backbone from scratch, lr 1e-3, short
# EMA, flip-only augmentation) plus what DEIM changes:
#   loss_cls MatchabilityAwareLoss (loss_mal), SiLU decoder / MLPs;
#   Dense O2O: DEIMMosaic (short side 64 = DEIM's 320 at 128/640 scale,
#     prob 0.5) and DEIMBatchMixUp (prob 0.5) in [e0, e1), no mosaic after;
#   policy epochs at DEIM-N's proportions (4 / 78 / 148 of 160 epochs):
#     [1, 12, 22] of 24;
#   quadratic lr warmup (DEIM) over the toy's 50 iterations; DEIM-N keeps the
#     lr flat after it (lr_gamma 1.0), as here.
_base_ = ['../../dfine/toy/dfine_hgnetv2_n_toy.py', '../_base_/deim_dfine.py']

img_size = 128
model = dict(
    data_preprocessor=dict(batch_augments=[{{_base_.deim_batch_mixup}}]),
    backbone={{_base_.deim_backbone}},
    decoder={{_base_.deim_decoder}},
    bbox_head={{_base_.deim_bbox_head}})

train_pipeline = [
    dict(type='CheckedLoadImageFromFile', on_error='skip', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='SanitizeBoundingBoxes',
        min_size=1,
        drop_ignored=True,
        log_dropped=True),
    dict(
        type='DEIMMosaic',
        output_size=img_size // 2,
        rotation_range=10,
        translation_range=(0.1, 0.1),
        scaling_range=(0.5, 1.5),
        fill_value=0,
        prob=0.5),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='Resize',
        scale=(img_size, img_size),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

param_scheduler = [
    dict(type='QuadraticWarmupLR', by_epoch=False, begin=0, end=50)
]
policy_epochs = [1, 12, 22]
default_hooks = dict(
    stop_aug=dict(
        _delete_=True,
        type='DenseO2OPolicyHook',
        policy_epochs=policy_epochs,
        reload_best_stage1=False))
