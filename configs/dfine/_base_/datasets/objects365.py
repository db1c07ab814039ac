# Objects365 v2 with the D-FINE pipelines (the official trains on images
# resized offline by configs/dataset/resize_obj365.py).  MMDetection's
# Objects365V2Dataset maps the 365 category ids to labels 0..364, so row 365
# of the official 366-way head is unused here (the official uses label =
# category id and leaves row 0 unused).
_base_ = './coco.py'

obj365_root = 'data/Objects365/Obj365_v2/'
train_dataloader = dict(
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
val_evaluator = dict(ann_file=obj365_root +
                     'annotations/zhiyuan_objv2_val.json')
test_evaluator = val_evaluator
