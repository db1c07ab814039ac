# D-FINE-N on the synthetic toy set of tools/make_toy_dataset.py (3 classes:
# square / circle / triangle), for CPU smoke tests and the CPU learning
# benchmark tools/experiments/toy_train.py.
#
#     python tools/make_toy_dataset.py --out data/toy
#     python tools/train.py configs/dfine/toy/dfine_hgnetv2_n_toy.py
#
# Architecture = D-FINE-N (HGNetV2-B0 from scratch, 128-d encoder/decoder,
# 3 decoder layers).  What differs from the official N recipe, and why
# (the official settings learn too slowly from scratch for a CPU budget of
# minutes):
#   input 128x128 (official 640)            the toy images are 128-192 px;
#                                           CPU time
#   num_queries 60, 30 denoising queries    128 px gives only 80 memory
#     (official 300 / 100)                  tokens at strides 16/32 (300
#                                           cannot be selected)
#   backbone from scratch (official:        no download at run time, and the
#     ImageNet-pretrained B0)               toy shapes need no ImageNet
#                                           features
#   lr 1e-3 everywhere (official 8e-4,      no ImageNet-pretrained backbone
#     backbone 4e-4), batch 8 (off. 128)    here, so the backbone gets the
#                                           full lr
#   LR warmup 50 iterations (official 500)  a run is only a few hundred
#                                           iterations
#   EMA decay 0.998, ramp 100 updates       an EMA window of ~10k updates
#     (official 0.9999 / 1000)              would still average the
#                                           untrained start after 15 min
#   strong augs: flip only, no photometric  a short run learns the
#     distort / zoom-out / IoU crop         shapes/colours faster without
#                                           them (the stop-epoch switch is
#                                           kept to exercise the mechanism)
#   no batch multi-scale                    as the official N
# Everything else (losses and their weights, matcher, GO-LSD, FDR, AdamW betas,
# weight decay 1e-4, grad clip 0.1, no-decay groups) is the official recipe.
_base_ = [
    '../_base_/models/dfine_hgnetv2_n.py',
    '../_base_/datasets/toy.py',
    '../_base_/schedules/dfine_adamw_n.py',
]

num_classes = {{_base_.num_dataset_classes}}
img_size = {{_base_.img_size}}
model = dict(
    backbone=dict(init_cfg=None),  # from scratch: no ImageNet weights here
    num_queries=60,
    eval_spatial_size=(img_size, img_size),
    dn_cfg=dict(num_denoising=30),
    bbox_head=dict(num_classes=num_classes),
    test_cfg=dict(max_per_img=100))

# schedule (toy): CPU, so the plain OptimWrapper (AMP needs CUDA)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(backbone_lr=1e-3))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1.0 / 50,
        end_factor=1.0,
        by_epoch=False,
        begin=0,
        end=50)
]
max_epochs = 24
stop_epoch = 20
train_cfg = dict(max_epochs=max_epochs, val_interval=4)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=4, max_keep_ckpts=2),
    ema=dict(warmups=100, decay=0.998),
    stop_aug=dict(stop_epoch=stop_epoch, reload_best_stage1=False))
auto_scale_lr = dict(enable=False, base_batch_size=8)
