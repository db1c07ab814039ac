# D-FINE-N trained on Objects365 (official checkpoint dfine_n_obj365.pth):
# 366 classes, label = raw Objects365 category id (1..365; row 0 unused).
_base_ = '../dfine_hgnetv2_n_coco.py'

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
    batch_size=32,
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

# schedule (official dfine_hgnetv2_n_obj365.yml): total batch 128 (4 GPUs x
# 32), AdamW lr 8e-4 / backbone 4e-4, weight decay 1e-4, 48 epochs; strong
# augmentation never stops (official stop_epoch 500); no batch multi-scale.
optim_wrapper = dict(
    optimizer=dict(lr=8e-4, weight_decay=1e-4),
    paramwise_cfg=dict(backbone_lr=4e-4, official_regex_style='nsm'))
max_epochs = 48
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
auto_scale_lr = dict(base_batch_size=128)
