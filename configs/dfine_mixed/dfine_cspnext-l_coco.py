# D-FINE (L encoder/decoder) on CSPNeXt-L, RTMDet-L's backbone.
# Wiring: CSPNeXt (arch P5) stages 2, 3, 4 give 256, 512, 1024 channels
#   (times widen_factor) at strides 8, 16, 32; out_indices (2, 3, 4)
#   -> neck.in_channels=[256, 512, 1024], feat_strides=[8, 16, 32].
# ImageNet start: an mmdet-format CSPNeXt-L ImageNet file (as RTMDet's
# cspnext-l ... imagenet_600e.pth, with `backbone.` prefix, hence
# prefix='backbone.') at the relative path below.  Nothing downloads.
_base_ = './_base_/dfine_l_mixed.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='CSPNeXt',
        arch='P5',
        deepen_factor=1.0,
        widen_factor=1.0,
        out_indices=(2, 3, 4),
        expand_ratio=0.5,
        channel_attention=True,
        norm_cfg=dict(type='BN'),
        act_cfg=dict(type='SiLU', inplace=True),
        init_cfg=dict(
            type='Pretrained',
            prefix='backbone.',
            checkpoint='checkpoints/cspnext-l_imagenet.pth')),
    neck=dict(in_channels=[256, 512, 1024]))
