# A custom COCO-format dataset with the D-FINE pipelines, for fine-tuning a
# COCO model (configs/dfine/custom/dfine_hgnetv2_<size>_custom.py):
#
#   1. list the class names in `classes` below (MMDetection metainfo; the
#      annotation categories are matched by name, labels follow this order;
#      the size configs take their `num_classes` from here) and point
#      `data_root` /
#      the annotation files at the data;
#   2. convert the released checkpoint:
#        python tools/convert_official_ckpt.py dfine_<size>_coco.pth \
#            checkpoints/dfine_hgnetv2_<size>_coco_mmdet.pth
#   3. python tools/train.py \
#          configs/dfine/custom/dfine_hgnetv2_<size>_custom.py
#
# `load_from` loads every weight of the COCO model except the class-dependent
# ones (class branches and denoising label embedding, 80 rows there): with a
# different number of classes ClassHeadAdaptHook drops them from the
# checkpoint, so they keep their fresh official initialisation, and logs the
# keys it re-initialised.  Any other shape mismatch is an error.  Every
# weight, the backbone's included, comes from `load_from`, so the
# ImageNet-pretrained backbone file of the COCO recipe is not needed.
_base_ = './coco.py'

classes = ('class_a', 'class_b', 'class_c')
num_dataset_classes = len(classes)  # the size configs' num_classes

data_root = 'data/custom/'
train_dataloader = dict(
    dataset=dict(
        metainfo=dict(classes=classes),
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(
        metainfo=dict(classes=classes),
        data_root=data_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
# the class rows of a checkpoint with another class set are re-initialised
# (see above)
custom_hooks = [dict(type='ClassHeadAdaptHook')]
