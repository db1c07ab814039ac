# D-FINE-M (HGNetV2-B2), COCO.
_base_ = [
    './_base_/models/dfine_hgnetv2_m.py',
    './_base_/datasets/coco.py',
    './_base_/schedules/dfine_adamw_sm.py',
]

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/PPHGNetV2_B2_stage1.pth')))

# schedule (official dfine_hgnetv2_m_coco.yml): total batch 32 (4 GPUs x 8),
# AdamW lr 2e-4 / backbone 2e-5, weight decay 1e-4, 132 epochs; strong
# augmentation and multi-scale (640 x6) stop at epoch 120.
optim_wrapper = dict(paramwise_cfg=dict(backbone_lr=2e-5))
