# D-FINE-S (HGNetV2-B0), COCO.
_base_ = './_base_/dfine_hgnetv2.py'

# model
model = dict(
    backbone=dict(
        arch='B0', use_lab=True, frozen_stem=False, freeze_norm=False),
    neck=dict(in_channels=[256, 512, 1024], expansion=0.5, depth_mult=0.34),
    decoder=dict(num_layers=3),
    bbox_head=dict(num_pred_layer=3))
