# DEIM (CVPR 2025, https://github.com/ShihuaHuang95/DEIM, commit a9aa4adce6b5,
# Apache-2.0) for D-FINE: the pieces every size shares, from its
# configs/base/deim.yml.  A size config inherits the D-FINE size config and
# this file, and takes these pieces by reference ({{_base_.deim_...}}):
# MMEngine does not allow two bases to define the same key (`model`, ...),
# so nothing here uses a name the D-FINE configs use.
#
# DEIM (deim.yml)                            -> here
#   DEIMCriterion losses mal/boxes/local,    -> bbox_head.loss_cls =
#     gamma 1.5, loss_mal weight 1              MatchabilityAwareLoss
#                                               (loss_mal)
#   DFINETransformer activation / mlp_act    -> decoder.activation / mlp_act
#     silu                                      'silu'
#   HGNetv2 freeze_at -1, freeze_norm False  -> backbone frozen_stem /
#                                               freeze_norm False (L/X froze
#                                               them in D-FINE)
#   Mosaic(output_size 320, rotation 10,     -> DEIMMosaic(prob=0.5) before
#     translate 0.1, scale 0.5-1.5, fill 0,     the photometric distortion;
#     use_cache False), mosaic_prob 0.5         zoom-out and IoU crop in
#                                               SkipAfterMosaic
#   collate_fn mixup_prob 0.5                -> DEIMBatchMixUp in the data
#                                               preprocessor's batch_augments
#   policy epoch [e0, e1, e2] + mixup_epochs -> DenseO2OPolicyHook (size file)
#   lrsheduler flatcosine, warmup_iter 2000  -> QuadraticWarmupLR(2000 iters)
#     (quadratic), flat_epoch, no_aug_epoch,    + CosineAnnealingLR(flat_epoch
#     lr_gamma 0.5                              -> max_epochs - no_aug_epoch,
#                                               eta_min_ratio=lr_gamma)
#                                               (size file)
deim_backbone = dict(frozen_stem=False, freeze_norm=False)
deim_decoder = dict(activation='silu', mlp_act='silu')
deim_bbox_head = dict(
    loss_cls=dict(
        _delete_=True,
        type='MatchabilityAwareLoss',
        alpha=1.0,  # DEIM mal_alpha=None
        gamma=1.5,
        loss_weight=1.0))
deim_batch_mixup = dict(type='DEIMBatchMixUp', prob=0.5)
deim_warmup = dict(type='QuadraticWarmupLR', by_epoch=False, begin=0, end=2000)
deim_lr_gamma = 0.5

# D-FINE's train pipeline (../../dfine/_base_/datasets/coco.py) with the
# Dense O2O Mosaic; DenseO2OPolicyHook switches DEIMMosaic,
# RandomPhotometricDistort and SkipAfterMosaic by epoch.
deim_train_pipeline = [
    dict(type='CheckedLoadImageFromFile', on_error='skip', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='SanitizeBoundingBoxes',
        min_size=1,
        drop_ignored=True,
        log_dropped=True),
    # -- Dense O2O / strong augmentation (DenseO2OPolicyHook) --
    dict(
        type='DEIMMosaic',
        output_size=320,
        rotation_range=10,
        translation_range=(0.1, 0.1),
        scaling_range=(0.5, 1.5),
        fill_value=0,
        prob=0.5,
        max_cached_images=50,
        random_pop=True),
    dict(type='RandomPhotometricDistort', p=0.5),
    dict(
        type='SkipAfterMosaic',
        transforms=[
            dict(
                type='Expand',
                mean=(0, 0, 0),
                to_rgb=False,
                ratio_range=(1, 4),
                prob=0.5),
            dict(type='RandomIoUCrop', p=0.8),
        ]),
    # -----------------------------------------------------------
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='Resize',
        scale=(640, 640),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='PackDetInputs'),
]
