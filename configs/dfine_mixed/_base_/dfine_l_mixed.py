# D-FINE encoder/decoder (HybridEncoder + FDR decoder, D-FINE-L settings) with
# the D-FINE-L training recipe, for MMDetection backbones.  The model comes
# from the D-FINE model base `configs/dfine/_base_/models/dfine_hgnetv2.py`
# (D-FINE-L encoder/decoder), composed with the D-FINE COCO data and AdamW
# schedule bases; each config in this folder replaces the backbone
# (`_delete_=True`) and sets `neck.in_channels` to its channels.
#
# Wiring rule: the neck takes the backbone maps at `backbone.out_indices`
# (high resolution first), so `neck.in_channels[i]` must be the channels of
# the i-th returned map and `feat_strides` (model level, copied into the neck)
# its stride.  A mismatch raises a ValueError in HybridEncoder.forward naming
# both values.  Not official D-FINE models: no published D-FINE weights.
_base_ = [
    '../../dfine/_base_/models/dfine_hgnetv2.py',
    '../../dfine/_base_/datasets/coco.py',
    '../../dfine/_base_/schedules/dfine_adamw.py',
]

model = dict(
    # training: batch multi-scale of the official BatchImageCollateFunction
    data_preprocessor=dict(batch_augments=[
        dict(
            type='DFINEBatchMultiScaleResize',
            base_size=640,
            base_size_repeat=4)
    ]),
    feat_strides=[8, 16, 32])

# schedule: the D-FINE-L recipe (official dfine_hgnetv2_l_coco.yml), i.e. the
# values of the schedule base: total batch 32, AdamW lr 2.5e-4 / backbone
# 1.25e-5, weight decay 1.25e-4, 80 epochs; strong augmentation and
# multi-scale stop at epoch 72.
