# dino-4scale_r18_toy.py (plain DINO at toy size) + FDR / GO-LSD: the same
# deltas as ../dino-4scale_r50_fdr_8xb2-12e_coco.py (whose values are
# D-FINE's defaults, the defaults of DINOFDRHead / DFINEHungarianAssigner;
# tests/test_mix_and_match/test_dino_fdr.py checks that both resolve to the
# same head / matcher settings), D-FINE's VFL instead of DINO's FocalLoss
# among them.  Compared with the plain toy config by
# tools/experiments/dino_fdr_toy.py.
_base_ = './dino-4scale_r18_toy.py'
custom_imports = dict(imports=['dfine_mmdet'], allow_failed_imports=False)

model = dict(
    type='DINOFDR',
    bbox_head=dict(
        type='DINOFDRHead',
        loss_cls=dict(
            _delete_=True,
            type='DFINEVarifocalLoss',
            alpha=0.75,
            gamma=2.0,
            loss_weight=1.0)),
    train_cfg=dict(
        _delete_=True, assigner=dict(type='DFINEHungarianAssigner')))
