# D-FINE-S trained on Objects365 (official checkpoint dfine_s_obj365.pth):
# 366 classes, label = raw Objects365 category id (1..365; row 0 unused).
_base_ = '../dfine_hgnetv2_s_coco.py'

# model
num_classes = 366
model = dict(
    bbox_head=dict(
        num_classes=num_classes, criterion=dict(num_classes=num_classes)))
