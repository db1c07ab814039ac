# D-FINE-X (HGNetV2-B5), COCO: 384-d encoder, 256-d decoder with 1x1 conv+BN
# input projections, reg_scale 8.
_base_ = './_base_/dfine_hgnetv2.py'

# model
model = dict(
    backbone=dict(arch='B5'),
    neck=dict(hidden_dim=384, dim_feedforward=2048),
    in_channels=[384, 384, 384],
    decoder=dict(reg_scale=8.0))
