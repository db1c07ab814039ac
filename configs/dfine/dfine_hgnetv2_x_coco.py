# D-FINE-X (HGNetV2-B5), COCO: 384-d encoder, 256-d decoder with 1x1 conv+BN
# input projections, reg_scale 8.
_base_ = [
    './_base_/models/dfine_hgnetv2_x.py',
    './_base_/datasets/coco.py',
    './_base_/schedules/dfine_adamw.py',
]

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/PPHGNetV2_B5_stage1.pth')))

# schedule (official dfine_hgnetv2_x_coco.yml): total batch 32 (4 GPUs x 8),
# AdamW lr 2.5e-4 / backbone 2.5e-6, weight decay 1.25e-4, 80 epochs; strong
# augmentation and multi-scale (640 x3) stop at epoch 72.
optim_wrapper = dict(paramwise_cfg=dict(backbone_lr=2.5e-6))
