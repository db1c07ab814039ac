# D-FINE-S fine-tuned on a custom COCO-format dataset from the COCO model
# (official `-t dfine_s_coco.pth` + custom/dfine_hgnetv2_s_custom.yml);
# steps and how `load_from` is used: ../_base_/datasets/custom.py.
_base_ = [
    '../_base_/models/dfine_hgnetv2_s.py',
    '../_base_/datasets/custom.py',
    '../_base_/schedules/dfine_adamw_sm.py',
]

num_classes = {{_base_.num_dataset_classes}}
model = dict(bbox_head=dict(num_classes=num_classes))
train_dataloader = dict(batch_size=16)
load_from = 'checkpoints/dfine_hgnetv2_s_coco_mmdet.pth'

# schedule (official custom/dfine_hgnetv2_s_custom.yml): total batch 64 (4 GPUs
# x 16), AdamW lr 4e-4 / backbone 2e-4, weight decay 1e-4, 220 epochs; strong
# augmentation and multi-scale (640 x20) stop at epoch 200.
optim_wrapper = dict(
    optimizer=dict(lr=4e-4), paramwise_cfg=dict(backbone_lr=2e-4))
max_epochs = 220
stop_epoch = 200
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(stop_aug=dict(stop_epoch=stop_epoch))
auto_scale_lr = dict(base_batch_size=64)
