# D-FINE-N schedule group (official dfine_hgnetv2_n_*.yml): AdamW lr 8e-4 /
# backbone 4e-4, weight decay 1e-4 in every N recipe; total batch 128 (4 GPUs
# x 32); COCO: 160 epochs, strong augmentation stops at epoch 148.
_base_ = './dfine_adamw.py'

optim_wrapper = dict(
    optimizer=dict(lr=8e-4, weight_decay=1e-4),
    paramwise_cfg=dict(backbone_lr=4e-4))
max_epochs = 160
stop_epoch = 148
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(stop_aug=dict(stop_epoch=stop_epoch))
auto_scale_lr = dict(base_batch_size=128)
