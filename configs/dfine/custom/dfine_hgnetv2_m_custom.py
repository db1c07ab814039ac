# D-FINE-M fine-tuned on a custom COCO-format dataset from the COCO model
# (official `-t dfine_m_coco.pth` + custom/dfine_hgnetv2_m_custom.yml);
# steps and how `load_from` is used: ../_base_/datasets/custom.py.
_base_ = [
    '../_base_/models/dfine_hgnetv2_m.py',
    '../_base_/datasets/custom.py',
    '../_base_/schedules/dfine_adamw_sm.py',
]

num_classes = {{_base_.num_dataset_classes}}
model = dict(bbox_head=dict(num_classes=num_classes))
load_from = 'checkpoints/dfine_hgnetv2_m_coco_mmdet.pth'

# schedule (official custom/dfine_hgnetv2_m_custom.yml): total batch 32 (4 GPUs
# x 8), AdamW lr 2.5e-4 / backbone 2.5e-5, weight decay 1.25e-4, 132 epochs;
# strong augmentation and multi-scale (640 x6) stop at epoch 120.
optim_wrapper = dict(
    optimizer=dict(lr=2.5e-4, weight_decay=1.25e-4),
    paramwise_cfg=dict(backbone_lr=2.5e-5))
