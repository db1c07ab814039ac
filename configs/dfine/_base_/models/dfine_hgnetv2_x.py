# D-FINE-X model: HGNetV2-B5, 384-d encoder (projected to the 256-d decoder),
# FDR reg_scale 8 (official dfine_hgnetv2_x_coco.yml).
_base_ = './dfine_hgnetv2.py'

model = dict(
    # batch multi-scale of the official BatchImageCollateFunction; repeat
    # count per size, the same in its coco/obj365/obj2coco/custom recipes
    data_preprocessor=dict(batch_augments=[
        dict(
            type='DFINEBatchMultiScaleResize',
            base_size=640,
            base_size_repeat=3)
    ]),
    backbone=dict(arch='B5'),
    neck=dict(embed_dims=384, feedforward_channels=2048),
    bbox_head=dict(bbox_coder=dict(reg_scale=8.0)))
