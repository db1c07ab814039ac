# D-FINE-M fine-tuned on a custom COCO-format dataset, starting from the
# COCO model (the official `-t dfine_m_coco.pth` + custom/dfine_hgnetv2_m_custom.yml).
#
#   1. list the class names in `classes` (MMDetection metainfo; the annotation
#      categories are matched by name, labels follow this order) and point
#      `data_root` / the annotation files at the data;
#   2. convert the released checkpoint:
#        python tools/convert_official_ckpt.py dfine_m_coco.pth \
#            checkpoints/dfine_hgnetv2_m_coco_mmdet.pth
#   3. python tools/train.py configs/dfine/custom/dfine_hgnetv2_m_custom.py
#
# `load_from` loads every weight of the COCO model except the class-dependent
# ones (class branches and denoising label embedding, 80 rows there): with a
# different number of classes ClassHeadAdaptHook drops them from the
# checkpoint, so they keep their fresh official initialisation, and logs the
# keys it re-initialised.  Any other shape mismatch is an error.
_base_ = '../dfine_hgnetv2_m_coco.py'

# dataset
data_root = 'data/custom/'
classes = ('class_a', 'class_b', 'class_c')
num_classes = len(classes)
# Every weight, the backbone's included, comes from `load_from`, so the
# ImageNet-pretrained backbone file of the COCO recipe is not needed (the
# official config loads it and then overwrites it with the -t checkpoint).
model = dict(
    backbone=dict(init_cfg=None),
    bbox_head=dict(
        num_classes=num_classes, criterion=dict(num_classes=num_classes)))
train_dataloader = dict(
    batch_size=8,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# fine-tuning
load_from = 'checkpoints/dfine_hgnetv2_m_coco_mmdet.pth'

# schedule (official custom/dfine_hgnetv2_m_custom.yml): total batch 32 (4 GPUs
# x 8), AdamW lr 2.5e-4 / backbone 2.5e-5, weight decay 1.25e-4, 132 epochs;
# strong augmentation and multi-scale (640 x6) stop at epoch 120.
optim_wrapper = dict(
    optimizer=dict(lr=2.5e-4, weight_decay=1.25e-4),
    paramwise_cfg=dict(backbone_lr=2.5e-5, official_regex_style='nsm'))
max_epochs = 132
stop_epoch = 120
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    dict(
        type='EMAHook',
        ema_type='DFINEModelEMA',
        decay=0.9999,
        warmups=1000,
        update_buffers=True,
        priority=49),
    dict(
        type='DFINEStopAugHook',
        stop_epoch=stop_epoch,
        reload_best_stage1=True),
    dict(type='ClassHeadAdaptHook'),
]
auto_scale_lr = dict(base_batch_size=32)
