# D-FINE-N model: HGNetV2-B0 (2 output levels), 128-d encoder/decoder,
# 3 decoder layers (official dfine_hgnetv2_n_coco.yml).
_base_ = './dfine_hgnetv2.py'

model = dict(
    backbone=dict(
        arch='B0',
        use_lab=True,
        out_indices=(2, 3),
        frozen_stem=False,
        freeze_norm=False),
    neck=dict(
        in_channels=[512, 1024],
        embed_dims=128,
        use_encoder_idx=[1],
        feedforward_channels=512,
        expansion=0.34,
        depth_mult=0.5),
    feat_strides=[16, 32],
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            embed_dims=128, feedforward_channels=512, num_points=[6, 6])))
