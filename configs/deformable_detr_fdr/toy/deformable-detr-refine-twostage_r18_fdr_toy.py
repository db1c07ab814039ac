# deformable-detr-refine-twostage_r18_toy.py (plain two-stage Deformable DETR
# with box refinement at toy size) + FDR / GO-LSD: the same deltas as
# ../deformable-detr-refine-twostage_r50_fdr_16xb2-50e_coco.py (whose values
# are D-FINE's defaults, the defaults of DeformableDETRFDRHead /
# DFINEHungarianAssigner).  Compared with the plain toy config by
# tools/experiments/dino_fdr_toy.py (models DDETR / DDETR+FDR).
_base_ = './deformable-detr-refine-twostage_r18_toy.py'
custom_imports = dict(imports=['dfine_mmdet'], allow_failed_imports=False)

model = dict(
    type='DeformableDETRFDR',
    bbox_head=dict(
        type='DeformableDETRFDRHead',
        loss_cls=dict(
            _delete_=True,
            type='DFINEVarifocalLoss',
            alpha=0.75,
            gamma=2.0,
            loss_weight=1.0)),
    train_cfg=dict(
        _delete_=True, assigner=dict(type='DFINEHungarianAssigner')))
