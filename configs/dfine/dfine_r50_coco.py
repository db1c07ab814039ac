# D-FINE encoder/decoder (HybridEncoder + FDR decoder, L settings) on
# MMDetection's ResNet-50.  Not an official D-FINE model: it shows that the
# plugin's neck/head work with any mmdet backbone.  `init_cfg=None`: nothing
# is downloaded; point it to a local torchvision-format checkpoint to start
# from ImageNet weights, e.g.
#   init_cfg=dict(type='Pretrained', checkpoint='weights/resnet50.pth')
_base_ = './_base_/dfine_coco_train.py'

# model
model = dict(
    # training: batch multi-scale of the official BatchImageCollateFunction
    data_preprocessor=dict(batch_augments=[
        dict(type='DFINEBatchMultiScaleResize', base_size=640,
             base_size_repeat=4)
    ]),
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),  # strides 8, 16, 32: 512, 1024, 2048 ch
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=None),
    neck=dict(in_channels=[512, 1024, 2048]))

# schedule (not an official model; the D-FINE-L recipe of the official
# dfine_hgnetv2_l_coco.yml): total batch 32 (4 GPUs x 8), AdamW lr 2.5e-4 /
# backbone 1.25e-5, weight decay 1.25e-4, 80 epochs; strong augmentation and
# multi-scale (640 x4) stop at epoch 72.
train_dataloader = dict(batch_size=8)
optim_wrapper = dict(
    optimizer=dict(lr=2.5e-4, weight_decay=1.25e-4),
    paramwise_cfg=dict(backbone_lr=1.25e-5, official_regex_style='lx'))
max_epochs = 80
stop_epoch = 72
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(stop_aug=dict(stop_epoch=stop_epoch))
auto_scale_lr = dict(base_batch_size=32)
