# D-FINE (L encoder/decoder) on MMDetection's PVTv2-B0.
# Wiring: PVTv2 stage i gives embed_dims * num_heads[i] channels at stride
#   4 * 2**i; B0: embed_dims 32, num_heads (1, 2, 5, 8), out_indices
#   (1, 2, 3) -> channels 64, 160, 256 at strides 8, 16, 32
#   -> neck.in_channels=[64, 160, 256], feat_strides=[8, 16, 32].
# ImageNet start: the official pvt_v2_b0.pth at the relative path below;
# PVTv2 converts the official keys itself (convert_weights=True, its
# default).  Nothing downloads.
_base_ = './_base_/dfine_l_mixed.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='PyramidVisionTransformerV2',
        embed_dims=32,
        num_layers=[2, 2, 2, 2],
        num_heads=[1, 2, 5, 8],
        out_indices=(1, 2, 3),
        convert_weights=True,
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/pvt_v2_b0.pth')),
    neck=dict(in_channels=[64, 160, 256]))
