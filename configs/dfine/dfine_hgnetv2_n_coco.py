# D-FINE-N (HGNetV2-B0, strides 16/32 only), COCO: 128-d encoder and decoder,
# 2 levels with 6 sampling points each.
_base_ = [
    './_base_/models/dfine_hgnetv2_n.py',
    './_base_/datasets/coco.py',
    './_base_/schedules/dfine_adamw_n.py',
]

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/PPHGNetV2_B0_stage1.pth')))

train_dataloader = dict(batch_size=32)

# schedule (official dfine_hgnetv2_n_coco.yml): total batch 128 (4 GPUs x 32),
# AdamW lr 8e-4 / backbone 4e-4, weight decay 1e-4, 160 epochs; strong
# augmentation stops at epoch 148; no batch multi-scale: the N group base.
