# D-FINE training recipe on COCO, on top of the model + test config.
# Reproduces the official configs/dfine/include/{dataloader,optimizer}.yml,
# configs/dataset/coco_detection.yml and configs/runtime.yml.  The values set
# here are the ones every size shares (or the D-FINE-L/X values); each variant
# config sets its own schedule in its "# schedule" section: lr, backbone lr,
# weight decay, epochs, stop epoch, multi-scale repeat, batch size.
#
# Official -> here:
#   RandomPhotometricDistort(p=0.5)    -> RandomPhotometricDistort (plugin, torchvision-v2 semantics)
#   RandomZoomOut(fill=0)              -> mmdet Expand(mean=0, ratio_range=(1, 4), prob=0.5)
#   RandomIoUCrop(p=0.8)               -> RandomIoUCrop (plugin, torchvision-v2 semantics + p)
#   SanitizeBoundingBoxes(min_size=1)  -> SanitizeBoundingBoxes (plugin)
#   RandomHorizontalFlip()             -> mmdet RandomFlip(prob=0.5)
#   Resize([640, 640]) (PIL bilinear)  -> mmdet Resize(keep_ratio=False, backend='pillow')
#   ConvertPILImage / ConvertBoxes     -> PackDetInputs + DetDataPreprocessor (RGB, /255)
#                                         + DFINEHead (boxes normalised by the input size)
#   policy stop_epoch + collate stop   -> DFINEStopAugHook(stop_epoch)
#   BatchImageCollateFunction          -> DFINEBatchMultiScaleResize (data_preprocessor.batch_augments)
#   AdamW param-group regexes          -> DFINEOptimWrapperConstructor (regex bug fixed by default)
#   LinearWarmup(500) + MultiStepLR([500 epochs], never reached) -> LinearLR over 500 iterations
#   ModelEMA(decay 0.9999, warmups 1000) -> EMAHook(ema_type='DFINEModelEMA')
#   clip_max_norm 0.1, use_amp True    -> optim_wrapper clip_grad / AmpOptimWrapper
_base_ = './dfine_hgnetv2.py'

# The official recipe starts from the ImageNet-pretrained HGNetV2
# (`HGNetv2.pretrained: True`, the authors' PPHGNetV2_<arch>_stage1.pth release
# files). Nothing is downloaded: put the file at this path, relative to the
# directory training runs in (each variant names its arch's file), or pass
# `--cfg-options model.backbone.init_cfg.checkpoint=/path/to/file.pth`. A
# missing file stops training with an error naming the path. Testing and
# inference (`init_detector`, `tools/test.py`) load a full checkpoint and never
# read this file.
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/PPHGNetV2_B4_stage1.pth')))

backend_args = None
train_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    # the official COCO loader drops crowd boxes before any transform
    dict(
        type='SanitizeBoundingBoxes',
        min_size=1,
        drop_ignored=True,
        log_dropped=True),
    # -- strong augmentation: removed from the pipeline at stop_epoch --
    dict(type='RandomPhotometricDistort', p=0.5),
    dict(
        type='Expand',
        mean=(0, 0, 0),
        to_rgb=False,
        ratio_range=(1, 4),
        prob=0.5),
    dict(type='RandomIoUCrop', p=0.8),
    # ------------------------------------------------------------------
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
# batch_size is per GPU: the official total batch is 32 on 4 GPUs (N: 128).
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,  # plain random batches (no aspect-ratio grouping)
    dataset=dict(pipeline=train_pipeline))

# optimizer: AdamW, grad-norm clip 0.1, AMP (CUDA).  On CPU use
# --cfg-options optim_wrapper.type=OptimWrapper (AmpOptimWrapper needs CUDA).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='DFINEOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=2.5e-4, betas=(0.9, 0.999), weight_decay=1.25e-4),
    # reproduce_official_regex_bug=True (+ official_regex_style='nsm' for
    # N/S/M, 'lx' for L/X) gives the official groups exactly
    paramwise_cfg=dict(backbone_lr=1.25e-5),
    clip_grad=dict(max_norm=0.1))

# lr: official LinearWarmup lr * min(1, (it + 1) / 500) == LinearLR from
# 1/500 at iteration 0 to 1 at iteration 499, then constant
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1.0 / 500,
        end_factor=1.0,
        by_epoch=False,
        begin=0,
        end=500)
]
# D-FINE keeps the lr constant after the warmup (official MultiStepLR milestone
# 500 epochs is never reached).  A "flat then cosine" schedule (as in later
# DETR recipes) composes from MMEngine parts: a scheduler is inactive before
# its `begin`, so the lr stays flat until then, e.g.
#   param_scheduler = [
#       dict(type='LinearLR', start_factor=1.0 / 500, by_epoch=False,
#            begin=0, end=500),
#       dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True,
#            begin=flat_epochs, end=max_epochs, convert_to_iter_based=True)]

max_epochs = 80
stop_epoch = 72
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=3,
        save_best='coco/bbox_mAP',
        rule='greater'),
    logger=dict(type='LoggerHook', interval=50))

# EMA of params and buffers with the 1000-update decay ramp (validation,
# testing and the saved `state_dict` use the EMA weights); the stop hook turns
# the strong augs and multi-scale off at `stop_epoch` and reloads the best
# stage-1 checkpoint there, as the official solver does.
custom_hooks = [
    dict(
        type='EMAHook',
        ema_type='DFINEModelEMA',
        decay=0.9999,
        warmups=1000,
        update_buffers=True,
        priority=49),
    dict(type='DFINEStopAugHook', stop_epoch=stop_epoch,
         reload_best_stage1=True),
]

# the official lr values are for a total batch of 32 (N: 128)
auto_scale_lr = dict(enable=False, base_batch_size=32)
