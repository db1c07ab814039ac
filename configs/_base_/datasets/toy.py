# The synthetic toy set of tools/make_toy_dataset.py (3 classes: square /
# circle / triangle, 128-192 px images) at `img_size` x `img_size`, for CPU
# smoke tests and learning benchmarks:
#
#     python tools/make_toy_dataset.py --out data/toy
#
# One source for every toy config (D-FINE's `dfine/_base_/datasets/toy.py`,
# `dino_fdr/toy/`, `deformable_detr_fdr/toy/`).  It inherits nothing, and the
# names an MMDetection base also defines carry a `toy_` prefix (MMEngine
# forbids one key in two `_base_` files): a config lists this file beside
# its MMDetection base and assigns them, e.g.
# `train_dataloader = _base_.toy_train_dataloader`.
#
# Training augmentation: flip only (a short run learns the shapes / colours
# faster without photometric distortion, zoom-out or IoU crop); no worker
# processes (CPU runs of a few minutes).
toy_data_root = 'data/toy/'
classes = ('square', 'circle', 'triangle')
num_dataset_classes = len(classes)  # the toy configs' num_classes
img_size = 128

toy_resize = dict(
    type='Resize',
    scale=(img_size, img_size),
    keep_ratio=False,
    backend='pillow',
    interpolation='bilinear')
# plain MMDetection loading (D-FINE's toy base uses its checked pipeline)
toy_train_pipeline = [
    dict(
        type='LoadImageFromFile', imdecode_backend='pillow',
        backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    toy_resize,
    dict(type='PackDetInputs'),
]
toy_test_pipeline = [
    dict(
        type='LoadImageFromFile', imdecode_backend='pillow',
        backend_args=None),
    toy_resize,
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
toy_train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=toy_data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=toy_train_pipeline))
toy_val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=toy_data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=toy_test_pipeline))
toy_val_evaluator = dict(
    type='CocoMetric',
    ann_file=toy_data_root + 'annotations/instances_val.json',
    metric='bbox',
    format_only=False)
