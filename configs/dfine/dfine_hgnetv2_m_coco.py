# D-FINE-M (HGNetV2-B2), COCO.
_base_ = './_base_/dfine_hgnetv2.py'

# model
model = dict(
    backbone=dict(
        arch='B2', use_lab=True, frozen_stem=False, freeze_norm=False),
    neck=dict(in_channels=[384, 768, 1536], depth_mult=0.67),
    decoder=dict(num_layers=4),
    bbox_head=dict(num_pred_layer=4))
