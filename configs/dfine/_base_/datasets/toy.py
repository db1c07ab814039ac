# D-FINE's toy dataset base: the toy set of `configs/_base_/datasets/toy.py`
# (its one source) with the checked loading and box sanitising of
# `./coco.py`, for CPU smoke tests and learning benchmarks
# (configs/dfine/toy/).
_base_ = ['./coco.py', '../../../_base_/datasets/toy.py']

data_root = _base_.toy_data_root
train_pipeline = [
    dict(type='CheckedLoadImageFromFile', on_error='skip', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='SanitizeBoundingBoxes',
        min_size=1,
        drop_ignored=True,
        log_dropped=True),
    dict(type='RandomFlip', prob=0.5),
    _base_.toy_resize,
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='PackDetInputs'),
]
test_pipeline = _base_.toy_test_pipeline
train_dataloader = dict(
    _base_.toy_train_dataloader,
    dataset=dict(_base_.toy_train_dataloader.dataset, pipeline=train_pipeline))
val_dataloader = test_dataloader = _base_.toy_val_dataloader
val_evaluator = test_evaluator = _base_.toy_val_evaluator
