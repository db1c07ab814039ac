# D-FINE-L model: HGNetV2-B4, 6 decoder layers = the model base's defaults
# (official dfine_hgnetv2_l_coco.yml).
_base_ = './dfine_hgnetv2.py'

model = dict(
    # batch multi-scale of the official BatchImageCollateFunction; repeat
    # count per size, the same in its coco/obj365/obj2coco/custom recipes
    data_preprocessor=dict(batch_augments=[
        dict(
            type='DFINEBatchMultiScaleResize',
            base_size=640,
            base_size_repeat=4)
    ]))
