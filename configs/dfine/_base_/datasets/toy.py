# The synthetic toy set of tools/make_toy_dataset.py (3 classes: square /
# circle / triangle, 128-192 px images) at `img_size` x `img_size`, for CPU
# smoke tests and learning benchmarks (configs/dfine/toy/):
#
#     python tools/make_toy_dataset.py --out data/toy
#
# Training augmentation: flip only (a short run learns the shapes / colours
# faster without photometric distortion, zoom-out or IoU crop); no worker
# processes (CPU runs of a few minutes).
_base_ = './coco.py'

data_root = 'data/toy/'
classes = ('square', 'circle', 'triangle')
num_dataset_classes = len(classes)  # the toy configs' num_classes
img_size = 128

backend_args = None
train_pipeline = [
    dict(
        type='CheckedLoadImageFromFile',
        on_error='skip',
        backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='SanitizeBoundingBoxes',
        min_size=1,
        drop_ignored=True,
        log_dropped=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='Resize',
        scale=(img_size, img_size),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        backend_args=backend_args),
    dict(
        type='Resize',
        scale=(img_size, img_size),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox',
    format_only=False)
test_evaluator = val_evaluator
