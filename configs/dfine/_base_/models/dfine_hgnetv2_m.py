# D-FINE-M model: HGNetV2-B2, 4 decoder layers (official
# dfine_hgnetv2_m_coco.yml).
_base_ = './dfine_hgnetv2.py'

model = dict(
    # batch multi-scale of the official BatchImageCollateFunction; repeat
    # count per size, the same in its coco/obj365/obj2coco/custom recipes
    data_preprocessor=dict(batch_augments=[
        dict(
            type='DFINEBatchMultiScaleResize',
            base_size=640,
            base_size_repeat=6)
    ]),
    backbone=dict(
        arch='B2', use_lab=True, frozen_stem=False, freeze_norm=False),
    neck=dict(in_channels=[384, 768, 1536], depth_mult=0.67),
    decoder=dict(num_layers=4))
