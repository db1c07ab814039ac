# D-FINE-S model: HGNetV2-B0, 3 decoder layers (official
# dfine_hgnetv2_s_coco.yml).
_base_ = './dfine_hgnetv2.py'

model = dict(
    # batch multi-scale of the official BatchImageCollateFunction; repeat
    # count per size, the same in its coco/obj365/obj2coco/custom recipes
    data_preprocessor=dict(batch_augments=[
        dict(
            type='DFINEBatchMultiScaleResize',
            base_size=640,
            base_size_repeat=20)
    ]),
    backbone=dict(
        arch='B0', use_lab=True, frozen_stem=False, freeze_norm=False),
    neck=dict(in_channels=[256, 512, 1024], expansion=0.5, depth_mult=0.34),
    decoder=dict(num_layers=3))
