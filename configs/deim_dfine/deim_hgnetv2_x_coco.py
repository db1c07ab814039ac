# DEIM-D-FINE-X: D-FINE-X trained with the DEIM recipe (DEIM
# configs/deim_dfine/deim_hgnetv2_x_coco.yml at a9aa4adce6b5): MAL, Dense O2O
# (Mosaic + batch MixUp), flat-cosine lr, unfrozen BN, SiLU decoder.  Shared
# pieces and the DEIM -> MMDetection table: ./_base_/deim_dfine.py.
# Schedule: 58 epochs; policy epochs [4, 29, 50] (Mosaic and MixUp in
# [4, 29), strong augmentation off before 4 and from 50,
# batch multi-scale (x3) until epoch 50);
# AdamW lr 5e-4, backbone 5e-6, weight decay 1.25e-4.
_base_ = ['../dfine/dfine_hgnetv2_x_coco.py', './_base_/deim_dfine.py']

model = dict(
    data_preprocessor=dict(
        batch_augments=[{{_base_.deim_batch_mixup}},
                        dict(
                            type='DFINEBatchMultiScaleResize',
                            base_size=640,
                            base_size_repeat=3)]),
    backbone={{_base_.deim_backbone}},
    decoder={{_base_.deim_decoder}},
    bbox_head={{_base_.deim_bbox_head}})
train_dataloader = dict(dataset=dict(pipeline={{_base_.deim_train_pipeline}}))

optim_wrapper = dict(
    optimizer=dict(lr=5e-4, weight_decay=1.25e-4),
    paramwise_cfg=dict(backbone_lr=5e-6))
max_epochs = 58
policy_epochs = [4, 29, 50]
stop_epoch = policy_epochs[2]
flat_epochs = 29
no_aug_epochs = 8
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [{{_base_.deim_warmup}},
                   dict(
                       type='CosineAnnealingLR',
                       eta_min_ratio={{_base_.deim_lr_gamma}},
                       by_epoch=True,
                       begin=flat_epochs,
                       end=max_epochs - no_aug_epochs,
                       convert_to_iter_based=True)]
default_hooks = dict(
    stop_aug=dict(
        _delete_=True,
        type='DenseO2OPolicyHook',
        policy_epochs=policy_epochs,
        reload_best_stage1=True))
