# D-FINE training schedule (official configs/dfine/include/optimizer.yml and
# configs/runtime.yml) with the values of the L / X schedule group (official
# dfine_hgnetv2_{l,x}_*.yml: lr 2.5e-4, weight decay 1.25e-4, COCO 80 epochs,
# stop epoch 72). Size groups: dfine_adamw_n.py (N), dfine_adamw_sm.py (S, M),
# this file (L, X); a config states only what differs from its group (backbone
# lr, or epochs of another recipe).
#   AdamW param-group regexes
#     -> DFINEOptimWrapperConstructor (regex bug fixed by default)
#   LinearWarmup(500) + MultiStepLR([500 epochs], never reached)
#     -> LinearLR over 500 iterations
#   ModelEMA(decay 0.9999, warmups 1000)
#     -> EMAHook(ema_type='DFINEModelEMA')
#   clip_max_norm 0.1, use_amp True
#     -> optim_wrapper clip_grad / AmpOptimWrapper
_base_ = 'mmdet::_base_/default_runtime.py'

# optimizer: AdamW, grad-norm clip 0.1, AMP (CUDA).  On CPU use
# --cfg-options optim_wrapper.type=OptimWrapper (AmpOptimWrapper needs CUDA).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='DFINEOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=2.5e-4, betas=(0.9, 0.999), weight_decay=1.25e-4),
    # reproduce_official_regex_bug=True (+ official_regex_style='lx' for L/X)
    # gives the official groups exactly
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

# Hooks by name (MMEngine merges `default_hooks` per key), so a size or user
# config changes one field or drops a hook without repeating the list:
#   default_hooks = dict(stop_aug=dict(stop_epoch=stop_epoch))
#   default_hooks = dict(ema=dict(warmups=0))      # e.g. fine-tuning recipes
# (MMEngine takes `None` only for its own hook names: to train without EMA,
# re-list the default hooks you keep under `dict(_delete_=True, ...)`.)
# `ema`: EMA of params and buffers with the 1000-update decay ramp
# (validation, testing and the saved `state_dict` use the EMA weights);
# `stop_aug`: turns the strong augs and multi-scale off at `stop_epoch` and
# reloads the best stage-1 checkpoint there, as the official solver does.
# `custom_hooks` stays free for the user's own hooks.
# `AtomicCheckpointHook`: MMEngine's CheckpointHook, except that a save
# interrupted mid-write never becomes `last_checkpoint` (temp file + fsync +
# os.replace), old checkpoints are deleted only after the new one is
# complete, and --resume falls back to the newest complete checkpoint;
# `data_skips`: one line per skipped-data cause with counts after each epoch.
default_hooks = dict(
    checkpoint=dict(
        type='AtomicCheckpointHook',
        interval=1,
        max_keep_ckpts=3,
        save_best='coco/bbox_mAP',
        rule='greater'),
    logger=dict(type='LoggerHook', interval=50),
    ema=dict(
        type='EMAHook',
        ema_type='DFINEModelEMA',
        decay=0.9999,
        warmups=1000,
        update_buffers=True,
        priority=49),
    stop_aug=dict(
        type='DFINEStopAugHook',
        stop_epoch=stop_epoch,
        reload_best_stage1=True),
    data_skips=dict(type='DataSkipReportHook'))

# the official lr values are for a total batch of 32 (N: 128)
auto_scale_lr = dict(enable=False, base_batch_size=32)
