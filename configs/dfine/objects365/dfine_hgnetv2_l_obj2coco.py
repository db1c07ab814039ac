# D-FINE-L pre-trained on Objects365, fine-tuned on COCO (official checkpoint
# dfine_l_obj2coco.pth): same architecture as the COCO model, 80 classes.
_base_ = '../dfine_hgnetv2_l_coco.py'
