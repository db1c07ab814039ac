# D-FINE-L trained on Objects365 (official checkpoint dfine_l_obj365.pth):
# 366 classes, label = raw Objects365 category id (1..365; row 0 unused).
_base_ = '../dfine_hgnetv2_l_coco.py'

# model
num_classes = 366
model = dict(
    bbox_head=dict(
        num_classes=num_classes, criterion=dict(num_classes=num_classes)))
