# D-FINE-N fine-tuned on a custom COCO-format dataset from the COCO model
# (official `-t dfine_n_coco.pth` + custom/dfine_hgnetv2_n_custom.yml);
# steps and how `load_from` is used: ../_base_/datasets/custom.py.
_base_ = [
    '../_base_/models/dfine_hgnetv2_n.py',
    '../_base_/datasets/custom.py',
    '../_base_/schedules/dfine_adamw_n.py',
]

num_classes = {{_base_.num_dataset_classes}}
model = dict(bbox_head=dict(num_classes=num_classes))
train_dataloader = dict(batch_size=32)
load_from = 'checkpoints/dfine_hgnetv2_n_coco_mmdet.pth'

# schedule (official custom/dfine_hgnetv2_n_custom.yml): total batch 128 (4
# GPUs x 32), AdamW lr 8e-4 / backbone 4e-4, weight decay 1e-4, 220 epochs;
# strong augmentation stops at epoch 200; no batch multi-scale.
max_epochs = 220
stop_epoch = 200
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(stop_aug=dict(stop_epoch=stop_epoch))
