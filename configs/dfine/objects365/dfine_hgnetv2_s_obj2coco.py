# D-FINE-S pre-trained on Objects365, fine-tuned on COCO (official checkpoint
# dfine_s_obj2coco.pth): same architecture as the COCO model, 80 classes.
_base_ = [
    '../_base_/models/dfine_hgnetv2_s.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/dfine_adamw.py',
]

model = dict(
    # official S obj2coco recipe: repeat 10 (the S model base has 20)
    data_preprocessor=dict(batch_augments=[
        dict(
            type='DFINEBatchMultiScaleResize',
            base_size=640,
            base_size_repeat=10)
    ]))

# schedule (official dfine_hgnetv2_s_obj2coco.yml): total batch 32 (4 GPUs x
# 8), AdamW lr 2.5e-4 / backbone 1.25e-4, weight decay 1.25e-4, 64 epochs;
# strong augmentation and multi-scale (640 x10) stop at epoch 56. No LR warmup
# and a constant EMA decay (official warmup_duration 0, EMA warmups 0).
# Every weight, the backbone's included, comes from `load_from`, so the
# ImageNet-pretrained backbone file of the COCO recipe is not needed (the
# official config loads it and then overwrites it with the -t checkpoint).
optim_wrapper = dict(paramwise_cfg=dict(backbone_lr=1.25e-4))
param_scheduler = []
max_epochs = 64
stop_epoch = 56
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(ema=dict(warmups=0), stop_aug=dict(stop_epoch=stop_epoch))
custom_hooks = [dict(type='ClassHeadAdaptHook', class_map='obj365_to_coco')]

# Fine-tuned from the Objects365 model (366 rows): the class rows of the
# class branches and of the denoising embedding are remapped to the 80 COCO
# classes with the official obj365_ids table (ClassHeadAdaptHook).
# e.g. load_from = 'work_dirs/dfine_hgnetv2_s_obj365/best_coco_bbox_mAP.pth'
load_from = None
