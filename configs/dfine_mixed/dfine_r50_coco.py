# D-FINE (L encoder/decoder) on MMDetection's ResNet-50.
# Wiring: ResNet stage i gives 256 * 2**i channels at stride 4 * 2**i;
#   out_indices (1, 2, 3) -> channels 512, 1024, 2048 at strides 8, 16, 32
#   -> neck.in_channels=[512, 1024, 2048], feat_strides=[8, 16, 32].
# ImageNet start: a local torchvision-format resnet50 file at the relative
# path below (nothing downloads; a missing file stops with its path).
_base_ = './_base_/dfine_l_mixed.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/resnet50.pth')),
    neck=dict(in_channels=[512, 1024, 2048]))
