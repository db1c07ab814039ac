# COCO 2017 detection with the D-FINE pipelines: the official train
# augmentation (configs/dfine/include/dataloader.yml) and eval preprocessing.
# Official -> here:
#   RandomPhotometricDistort(p=0.5)
#     -> RandomPhotometricDistort (plugin, torchvision-v2 semantics)
#   RandomZoomOut(fill=0)
#     -> mmdet Expand(mean=0, ratio_range=(1, 4), prob=0.5)
#   RandomIoUCrop(p=0.8)
#     -> RandomIoUCrop (plugin, torchvision-v2 semantics + p)
#   SanitizeBoundingBoxes(min_size=1)
#     -> SanitizeBoundingBoxes (plugin)
#   RandomHorizontalFlip()
#     -> mmdet RandomFlip(prob=0.5)
#   Resize([640, 640]) (PIL bilinear)
#     -> mmdet Resize(keep_ratio=False, backend='pillow')
#   ConvertPILImage / ConvertBoxes
#     -> PackDetInputs + DetDataPreprocessor (RGB, /255)
#        + DFINEHead (boxes normalised by the input size)
#   policy stop_epoch + collate stop
#     -> DFINEStopAugHook(stop_epoch) (schedule)
_base_ = 'mmdet::_base_/datasets/coco_detection.py'

# Official eval preprocessing: PIL decode, Resize((640, 640)) bilinear without
# keeping the ratio, RGB, /255.  Boxes are mapped back to the original image
# through `scale_factor`.
backend_args = None
#
# Data checks (docs/reliability.md): in training, `CheckedLoadImageFromFile`
# (Pillow, as the official loader) turns a missing / corrupt / truncated
# image into a counted skip; `CheckedCocoDataset` counts every annotation it
# drops, by cause; `default_hooks.data_skips` logs the counts after each
# epoch.  The test pipeline keeps MMCV's `LoadImageFromFile`: MMDetection's
# `DetInferencer` looks that transform up by name to swap in its own loader.
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        backend_args=backend_args),
    dict(
        type='Resize',
        scale=(640, 640),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
val_dataloader = dict(
    dataset=dict(type='CheckedCocoDataset', pipeline=test_pipeline))
test_dataloader = val_dataloader

train_pipeline = [
    dict(
        type='CheckedLoadImageFromFile',
        on_error='skip',
        backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    # the official COCO loader drops crowd boxes before any transform
    dict(
        type='SanitizeBoundingBoxes',
        min_size=1,
        drop_ignored=True,
        log_dropped=True),
    # -- strong augmentation: removed from the pipeline at stop_epoch --
    dict(type='RandomPhotometricDistort', p=0.5),
    dict(
        type='Expand',
        mean=(0, 0, 0),
        to_rgb=False,
        ratio_range=(1, 4),
        prob=0.5),
    dict(type='RandomIoUCrop', p=0.8),
    # ------------------------------------------------------------------
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='Resize',
        scale=(640, 640),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='PackDetInputs'),
]
# batch_size is per GPU: the official total batch is 32 on 4 GPUs (N: 128).
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,  # plain random batches (no aspect-ratio grouping)
    dataset=dict(type='CheckedCocoDataset', pipeline=train_pipeline))
