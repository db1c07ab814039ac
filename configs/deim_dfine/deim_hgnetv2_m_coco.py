# DEIM-D-FINE-M: D-FINE-M trained with the DEIM recipe (DEIM
# configs/deim_dfine/deim_hgnetv2_m_coco.yml at a9aa4adce6b5): MAL, Dense O2O
# (Mosaic + batch MixUp), flat-cosine lr, unfrozen BN, SiLU decoder.  Shared
# pieces and the DEIM -> MMDetection table: ./_base_/deim_dfine.py.
# Schedule: 102 epochs; policy epochs [4, 49, 90] (Mosaic and MixUp in
# [4, 49), strong augmentation off before 4 and from 90,
# batch multi-scale (x6) until epoch 90);
# AdamW lr 4e-4, backbone 4e-5, weight decay 1e-4.
_base_ = ['../dfine/dfine_hgnetv2_m_coco.py', './_base_/deim_dfine.py']

model = dict(
    data_preprocessor=dict(
        batch_augments=[{{_base_.deim_batch_mixup}},
                        dict(
                            type='DFINEBatchMultiScaleResize',
                            base_size=640,
                            base_size_repeat=6)]),
    backbone={{_base_.deim_backbone}},
    decoder={{_base_.deim_decoder}},
    bbox_head={{_base_.deim_bbox_head}})
train_dataloader = dict(dataset=dict(pipeline={{_base_.deim_train_pipeline}}))

optim_wrapper = dict(
    optimizer=dict(lr=4e-4, weight_decay=1e-4),
    paramwise_cfg=dict(backbone_lr=4e-5))
max_epochs = 102
policy_epochs = [4, 49, 90]
stop_epoch = policy_epochs[2]
flat_epochs = 49
no_aug_epochs = 12
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
