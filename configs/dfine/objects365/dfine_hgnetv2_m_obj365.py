# D-FINE-M trained on Objects365 (official checkpoint dfine_m_obj365.pth):
# 366 classes, label = raw Objects365 category id (1..365; row 0 unused).
_base_ = '../dfine_hgnetv2_m_coco.py'

# model
num_classes = 366
model = dict(
    bbox_head=dict(
        num_classes=num_classes, criterion=dict(num_classes=num_classes)))

# Objects365 v2 data (the official trains on images resized offline by
# configs/dataset/resize_obj365.py).  MMDetection's Objects365V2Dataset maps
# the 365 category ids to labels 0..364, so row 365 of the 366-way head is
# unused here (the official uses label = category id and leaves row 0 unused).
obj365_root = 'data/Objects365/Obj365_v2/'
train_dataloader = dict(
    batch_size=8,
    dataset=dict(
        type='Objects365V2Dataset',
        data_root=obj365_root,
        ann_file='annotations/zhiyuan_objv2_train.json',
        data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(
        type='Objects365V2Dataset',
        data_root=obj365_root,
        ann_file='annotations/zhiyuan_objv2_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=obj365_root + 'annotations/zhiyuan_objv2_val.json')
test_evaluator = val_evaluator

# schedule (official dfine_hgnetv2_m_obj365.yml): total batch 32 (4 GPUs x 8),
# AdamW lr 2.5e-4 / backbone 2.5e-5, weight decay 1.25e-4, 36 epochs; strong
# augmentation and multi-scale (640 x6) never stop (official stop_epoch 500).
optim_wrapper = dict(
    optimizer=dict(lr=2.5e-4, weight_decay=1.25e-4),
    paramwise_cfg=dict(backbone_lr=2.5e-5, official_regex_style='nsm'))
max_epochs = 36
stop_epoch = 500
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
        stop_epoch=stop_epoch),
]
auto_scale_lr = dict(base_batch_size=32)
