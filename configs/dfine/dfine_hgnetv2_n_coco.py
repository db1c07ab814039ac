# D-FINE-N (HGNetV2-B0, strides 16/32 only), COCO: 128-d encoder and decoder,
# 2 levels with 6 sampling points each.
_base_ = './_base_/dfine_hgnetv2.py'

# model
model = dict(
    backbone=dict(
        arch='B0',
        use_lab=True,
        out_indices=(2, 3),
        frozen_stem=False,
        freeze_norm=False),
    neck=dict(
        in_channels=[512, 1024],
        feat_strides=[16, 32],
        hidden_dim=128,
        use_encoder_idx=[1],
        dim_feedforward=512,
        expansion=0.34,
        depth_mult=0.5),
    in_channels=[128, 128],
    feat_strides=[16, 32],
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            embed_dims=128,
            feedforward_channels=512,
            num_levels=2,
            num_points=[6, 6])),
    bbox_head=dict(embed_dims=128, num_pred_layer=3))
