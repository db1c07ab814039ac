# Two-stage Deformable DETR with box refinement, R-50 50e (mmdet's config,
# unchanged) with D-FINE's Fine-grained Distribution Refinement (FDR) and
# GO-LSD (arXiv 2410.13842, §3.2-3.3):
#   - decoder: Deformable DETR's layers, per-layer box refinement = FDR
#     (residual edge distributions over reg_max + 1 bins, decoded around the
#     two-stage proposal with the head's FDRBBoxCoder) instead of box deltas
#   - head: DeformableDETRHead with corner reg branches (4 * (reg_max + 1)
#     outputs), losses D-FINE's IoU-aware VFL + L1 + GIoU + FGL + DDF over
#     the GO-LSD union of the matches of all layers and of the
#     (class-agnostic, top-k) encoder proposals.  VFL, not Deformable DETR's
#     FocalLoss: a label-only class loss does not tell the scorer which of the
#     union's well-localised queries is best (docs/fdr_in_detrs.md, 2b and 3)
# Everything else (data, schedule, optimizer, 300 queries) is mmdet's
# deformable-detr-refine-twostage_r50_16xb2-50e_coco.py.
# Fine-tune from a plain mmdet checkpoint of that config with
#   --cfg-options load_from=<checkpoint>
# (every weight loads except the last Linear of the decoder's
# bbox_head.reg_branches.{0..5}, reported as size mismatches).
_base_ = 'mmdet::deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py'  # noqa: E501
custom_imports = dict(imports=['dfine_mmdet'], allow_failed_imports=False)

model = dict(
    type='DeformableDETRFDR',
    bbox_head=dict(
        type='DeformableDETRFDRHead',
        # the one place of the FDR settings (the decoder uses this coder)
        bbox_coder=dict(
            type='FDRBBoxCoder', reg_max=32, reg_scale=4.0, up=0.5),
        go_lsd_assigner=dict(type='GOLSDAssigner'),
        loss_cls=dict(
            _delete_=True,
            type='DFINEVarifocalLoss',
            alpha=0.75,
            gamma=2.0,
            loss_weight=1.0),
        loss_fgl=dict(type='FineGrainedLocalizationLoss', loss_weight=0.15),
        loss_ddf=dict(
            type='DecoupledDistillationFocalLoss',
            temperature=5.0,
            loss_weight=1.5)),
    # batched matcher of the GO-LSD mixin; same focal / L1 / GIoU costs
    # (2 / 5 / 2) as Deformable DETR's HungarianAssigner
    train_cfg=dict(
        _delete_=True,
        assigner=dict(
            type='DFINEHungarianAssigner',
            cost_class=2.0,
            cost_bbox=5.0,
            cost_giou=2.0,
            alpha=0.25,
            gamma=2.0)))
