# D-FINE-L (HGNetV2-B4), COCO: the base config is the L model.
_base_ = './_base_/dfine_hgnetv2.py'
