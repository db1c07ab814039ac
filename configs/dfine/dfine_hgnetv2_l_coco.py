# D-FINE-L (HGNetV2-B4), COCO: the base config is the L model.
_base_ = [
    './_base_/models/dfine_hgnetv2_l.py',
    './_base_/datasets/coco.py',
    './_base_/schedules/dfine_adamw.py',
]

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/PPHGNetV2_B4_stage1.pth')))

# schedule (official dfine_hgnetv2_l_coco.yml): total batch 32 (4 GPUs x 8),
# AdamW lr 2.5e-4 / backbone 1.25e-5, weight decay 1.25e-4, 80 epochs; strong
# augmentation and multi-scale (640 x4) stop at epoch 72: the L/X group base.
