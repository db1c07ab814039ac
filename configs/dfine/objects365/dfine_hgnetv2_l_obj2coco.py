# D-FINE-L pre-trained on Objects365, fine-tuned on COCO (official checkpoint
# dfine_l_obj2coco.pth): same architecture as the COCO model, 80 classes.
_base_ = [
    '../_base_/models/dfine_hgnetv2_l.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/dfine_adamw.py',
]

# schedule (official dfine_hgnetv2_l_obj2coco.yml): total batch 32 (4 GPUs x
# 8), AdamW lr 2.5e-4 / backbone 1.25e-5, weight decay 1.25e-4, 36 epochs;
# strong augmentation and multi-scale (640 x4) stop at epoch 30. No LR warmup
# and a constant EMA decay (official warmup_duration 0, EMA warmups 0).
param_scheduler = []
max_epochs = 36
stop_epoch = 30
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(ema=dict(warmups=0), stop_aug=dict(stop_epoch=stop_epoch))
custom_hooks = [dict(type='ClassHeadAdaptHook', class_map='obj365_to_coco')]

# Fine-tuned from the Objects365 model (366 rows): the class rows of the
# class branches and of the denoising embedding are remapped to the 80 COCO
# classes with the official obj365_ids table (ClassHeadAdaptHook).
# e.g. load_from = 'work_dirs/dfine_hgnetv2_l_obj365/best_coco_bbox_mAP.pth'
load_from = None
