# D-FINE encoder/decoder (HybridEncoder + FDR decoder, L settings) on
# MMDetection's ResNet-50.  Not an official D-FINE model: it shows that the
# plugin's neck/head work with any mmdet backbone.  `init_cfg=None`: nothing
# is downloaded; point it to a local torchvision-format checkpoint to start
# from ImageNet weights, e.g.
#   init_cfg=dict(type='Pretrained', checkpoint='weights/resnet50.pth')
_base_ = './_base_/dfine_hgnetv2.py'

# model
model = dict(
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
