# D-FINE-N trained on Objects365 (official checkpoint dfine_n_obj365.pth):
# 366 classes, label = raw Objects365 category id (1..365; row 0 unused).
_base_ = [
    '../_base_/models/dfine_hgnetv2_n.py',
    '../_base_/datasets/objects365.py',
    '../_base_/schedules/dfine_adamw_n.py',
]

num_classes = 366

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/PPHGNetV2_B0_stage1.pth')),
    bbox_head=dict(num_classes=num_classes))

train_dataloader = dict(batch_size=32)

# schedule (official dfine_hgnetv2_n_obj365.yml): total batch 128 (4 GPUs x
# 32), AdamW lr 8e-4 / backbone 4e-4, weight decay 1e-4, 48 epochs; strong
# augmentation never stops (official stop_epoch 500); no batch multi-scale.
max_epochs = 48
stop_epoch = 500
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    stop_aug=dict(stop_epoch=stop_epoch, reload_best_stage1=False))
