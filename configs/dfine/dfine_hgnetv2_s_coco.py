# D-FINE-S (HGNetV2-B0), COCO.
_base_ = [
    './_base_/models/dfine_hgnetv2_s.py',
    './_base_/datasets/coco.py',
    './_base_/schedules/dfine_adamw.py',
]

model = dict(
    backbone=dict(init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/PPHGNetV2_B0_stage1.pth')))

train_dataloader = dict(batch_size=8)

# schedule (official dfine_hgnetv2_s_coco.yml): total batch 32 (4 GPUs x 8),
# AdamW lr 2e-4 / backbone 1e-4, weight decay 1e-4, 132 epochs; strong
# augmentation and multi-scale (640 x20) stop at epoch 120.
optim_wrapper = dict(
    optimizer=dict(lr=2e-4, weight_decay=1e-4),
    paramwise_cfg=dict(backbone_lr=1e-4, official_regex_style='nsm'))
max_epochs = 132
stop_epoch = 120
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(stop_aug=dict(stop_epoch=stop_epoch))
auto_scale_lr = dict(base_batch_size=32)
