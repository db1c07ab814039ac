# D-FINE (L encoder/decoder) on MMDetection's Swin-T.
# Wiring: Swin stage i gives embed_dims * 2**i channels at stride 4 * 2**i;
#   embed_dims 96, out_indices (1, 2, 3) -> channels 192, 384, 768 at
#   strides 8, 16, 32 -> neck.in_channels=[192, 384, 768],
#   feat_strides=[8, 16, 32].
# ImageNet start: the official Swin-T file (swin_tiny_patch4_window7_224.pth)
# at the relative path below; convert_weights=True maps its keys to mmdet's
# (as mmdet's own Swin configs do).  Nothing downloads.
_base_ = './_base_/dfine_l_mixed.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        embed_dims=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.2,
        patch_norm=True,
        out_indices=(1, 2, 3),
        with_cp=False,
        convert_weights=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/swin_tiny_patch4_window7_224.pth')),
    neck=dict(in_channels=[192, 384, 768]))
