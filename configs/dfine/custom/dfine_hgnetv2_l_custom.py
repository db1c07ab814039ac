# D-FINE-L fine-tuned on a custom COCO-format dataset from the COCO model
# (official `-t dfine_l_coco.pth` + custom/dfine_hgnetv2_l_custom.yml);
# steps and how `load_from` is used: ../_base_/datasets/custom.py.
_base_ = [
    '../_base_/models/dfine_hgnetv2_l.py',
    '../_base_/datasets/custom.py',
    '../_base_/schedules/dfine_adamw.py',
]

classes = ('class_a', 'class_b', 'class_c')
num_classes = len(classes)

model = dict(
    bbox_head=dict(num_classes=num_classes))

train_dataloader = dict(batch_size=8,
                        dataset=dict(metainfo=dict(classes=classes)))
val_dataloader = dict(dataset=dict(metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
load_from = 'checkpoints/dfine_hgnetv2_l_coco_mmdet.pth'

# schedule (official custom/dfine_hgnetv2_l_custom.yml): total batch 32 (4 GPUs
# x 8), AdamW lr 2.5e-4 / backbone 1.25e-5, weight decay 1.25e-4, 80 epochs;
# strong augmentation and multi-scale (640 x4) stop at epoch 72.
optim_wrapper = dict(
    optimizer=dict(lr=2.5e-4, weight_decay=1.25e-4),
    paramwise_cfg=dict(backbone_lr=1.25e-5, official_regex_style='lx'))
max_epochs = 80
stop_epoch = 72
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(stop_aug=dict(stop_epoch=stop_epoch))
custom_hooks = [dict(type='ClassHeadAdaptHook')]
auto_scale_lr = dict(base_batch_size=32)
