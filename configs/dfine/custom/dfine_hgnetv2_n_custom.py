# D-FINE-N fine-tuned on a custom COCO-format dataset from the COCO model
# (official `-t dfine_n_coco.pth` + custom/dfine_hgnetv2_n_custom.yml);
# steps and how `load_from` is used: ../_base_/datasets/custom.py.
_base_ = [
    '../_base_/models/dfine_hgnetv2_n.py',
    '../_base_/datasets/custom.py',
    '../_base_/schedules/dfine_adamw.py',
]

classes = ('class_a', 'class_b', 'class_c')
num_classes = len(classes)

model = dict(
    bbox_head=dict(num_classes=num_classes))

train_dataloader = dict(batch_size=32,
                        dataset=dict(metainfo=dict(classes=classes)))
val_dataloader = dict(dataset=dict(metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
load_from = 'checkpoints/dfine_hgnetv2_n_coco_mmdet.pth'

# schedule (official custom/dfine_hgnetv2_n_custom.yml): total batch 128 (4
# GPUs x 32), AdamW lr 8e-4 / backbone 4e-4, weight decay 1e-4, 220 epochs;
# strong augmentation stops at epoch 200; no batch multi-scale.
optim_wrapper = dict(
    optimizer=dict(lr=8e-4, weight_decay=1e-4),
    paramwise_cfg=dict(backbone_lr=4e-4, official_regex_style='nsm'))
max_epochs = 220
stop_epoch = 200
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(stop_aug=dict(stop_epoch=stop_epoch))
custom_hooks = [dict(type='ClassHeadAdaptHook')]
auto_scale_lr = dict(base_batch_size=128)
