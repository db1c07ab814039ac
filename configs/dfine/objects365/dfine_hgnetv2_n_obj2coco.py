# D-FINE-N pre-trained on Objects365, fine-tuned on COCO (official checkpoint
# dfine_n_obj2coco.pth): same architecture as the COCO model, 80 classes.
_base_ = [
    '../_base_/models/dfine_hgnetv2_n.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/dfine_adamw_n.py',
]

train_dataloader = dict(batch_size=32)

# schedule (official dfine_hgnetv2_n_obj2coco.yml): total batch 128 (4 GPUs x
# 32), AdamW lr 8e-4 / backbone 4e-4, weight decay 1e-4, 64 epochs; strong
# augmentation stops at epoch 56; no batch multi-scale. No LR warmup and a
# constant EMA decay (official warmup_duration 0, EMA warmups 0).
param_scheduler = []
max_epochs = 64
stop_epoch = 56
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(ema=dict(warmups=0), stop_aug=dict(stop_epoch=stop_epoch))
custom_hooks = [dict(type='ClassHeadAdaptHook', class_map='obj365_to_coco')]

# Fine-tuned from the Objects365 model (366 rows): the class rows of the
# class branches and of the denoising embedding are remapped to the 80 COCO
# classes with the official obj365_ids table (ClassHeadAdaptHook).
# e.g. load_from = 'work_dirs/dfine_hgnetv2_n_obj365/best_coco_bbox_mAP.pth'
load_from = None
