# D-FINE-S / M schedule group (official dfine_hgnetv2_{s,m}_coco.yml): AdamW
# lr 2e-4, weight decay 1e-4, 132 epochs, strong augmentation and multi-scale
# stop at epoch 120; the size config sets its backbone lr.
_base_ = './dfine_adamw.py'

optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=1e-4))
max_epochs = 132
stop_epoch = 120
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(stop_aug=dict(stop_epoch=stop_epoch))
