# DEIM-D-FINE-N: D-FINE-N trained with the DEIM recipe (DEIM
# configs/deim_dfine/deim_hgnetv2_n_coco.yml at a9aa4adce6b5): MAL, Dense O2O
# (Mosaic + batch MixUp), flat-cosine lr, unfrozen BN, SiLU decoder.  Shared
# pieces and the DEIM -> MMDetection table: ./_base_/deim_dfine.py.
# Schedule: 160 epochs; policy epochs [4, 78, 148] (Mosaic and MixUp in
# [4, 78), strong augmentation off before 4 and from 148);
# AdamW lr 8e-4, backbone 4e-4, weight decay 1e-4.
_base_ = ['../dfine/dfine_hgnetv2_n_coco.py', './_base_/deim_dfine.py']

model = dict(
    data_preprocessor=dict(batch_augments=[{{_base_.deim_batch_mixup}}]),
    backbone={{_base_.deim_backbone}},
    decoder={{_base_.deim_decoder}},
    bbox_head={{_base_.deim_bbox_head}})
train_dataloader = dict(dataset=dict(pipeline={{_base_.deim_train_pipeline}}))

# optimizer: the D-FINE-N values (lr 8e-4, backbone 4e-4, weight decay 1e-4)
max_epochs = 160
policy_epochs = [4, 78, 148]
stop_epoch = policy_epochs[2]
train_cfg = dict(max_epochs=max_epochs)
# flat_epoch 7800 is past the last epoch and lr_gamma is 1.0: the lr stays
# flat after the warmup (no cosine part)
param_scheduler = [{{_base_.deim_warmup}}]
default_hooks = dict(
    stop_aug=dict(
        _delete_=True,
        type='DenseO2OPolicyHook',
        policy_epochs=policy_epochs,
        reload_best_stage1=True))
