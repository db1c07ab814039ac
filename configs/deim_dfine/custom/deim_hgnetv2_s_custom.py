# DEIM-D-FINE-S fine-tuned on a custom COCO-format dataset from a COCO model
# (DEIM's or D-FINE's, converted with tools/convert_official_ckpt.py; see
# docs/deim.md).  Classes, data paths and `load_from`: as in
# ../../dfine/custom/dfine_hgnetv2_s_custom.py (same steps); this adds the
# DEIM recipe of ../_base_/deim_dfine.py.  DEIM ships no custom-dataset
# recipe: the schedule keeps D-FINE's custom one (220 epochs, strong
# augmentation until 200, lr 4e-4 / backbone 2e-4) and places the DEIM policy
# epochs by DEIM's own rule (comment of its configs: flat / mosaic end =
# 4 + stop_epoch // 2): policy [4, 104, 200], cosine from epoch 104 to 200.
_base_ = [
    '../../dfine/custom/dfine_hgnetv2_s_custom.py', '../_base_/deim_dfine.py'
]

model = dict(
    data_preprocessor=dict(
        batch_augments=[{{_base_.deim_batch_mixup}},
                        dict(
                            type='DFINEBatchMultiScaleResize',
                            base_size=640,
                            base_size_repeat=20)]),
    backbone={{_base_.deim_backbone}},
    decoder={{_base_.deim_decoder}},
    bbox_head={{_base_.deim_bbox_head}})
train_dataloader = dict(dataset=dict(pipeline={{_base_.deim_train_pipeline}}))
load_from = 'checkpoints/deim_hgnetv2_s_coco_mmdet.pth'

max_epochs = 220
policy_epochs = [4, 104, 200]
stop_epoch = policy_epochs[2]
flat_epochs = 104
no_aug_epochs = 20
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
