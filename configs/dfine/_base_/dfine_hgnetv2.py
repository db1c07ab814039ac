# D-FINE-L model + COCO test pipeline/dataloaders + MMDetection runtime.
# Composition of the bases: `models/dfine_hgnetv2.py` (model) and
# `datasets/coco.py` (data); training parts are added by the training configs.
_base_ = [
    'mmdet::_base_/default_runtime.py',
    './datasets/coco.py',
    './models/dfine_hgnetv2.py',
]
