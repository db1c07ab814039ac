# D-FINE-X trained on Objects365 (official checkpoint dfine_x_obj365.pth):
# 366 classes, label = raw Objects365 category id (1..365; row 0 unused).
_base_ = [
    '../_base_/models/dfine_hgnetv2_x.py',
    '../_base_/datasets/objects365.py',
    '../_base_/schedules/dfine_adamw.py',
]

num_classes = 366

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/PPHGNetV2_B5_stage1.pth')),
    bbox_head=dict(num_classes=num_classes))

# schedule (official dfine_hgnetv2_x_obj365.yml): total batch 32 (4 GPUs x 8),
# AdamW lr 2.5e-4 / backbone 2.5e-6, weight decay 1.25e-4, 24 epochs; strong
# augmentation and multi-scale (640 x3) never stop (official stop_epoch 500).
optim_wrapper = dict(paramwise_cfg=dict(backbone_lr=2.5e-6))
max_epochs = 24
stop_epoch = 500
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    stop_aug=dict(stop_epoch=stop_epoch, reload_best_stage1=False))
