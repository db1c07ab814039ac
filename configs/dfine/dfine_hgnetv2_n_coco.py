# D-FINE-N (HGNetV2-B0, strides 16/32 only), COCO: 128-d encoder and decoder,
# 2 levels with 6 sampling points each.
_base_ = './_base_/dfine_coco_train.py'

# model
model = dict(
    backbone=dict(
        arch='B0',
        use_lab=True,
        out_indices=(2, 3),
        frozen_stem=False,
        freeze_norm=False,
        init_cfg=dict(checkpoint='checkpoints/PPHGNetV2_B0_stage1.pth')),
    neck=dict(
        in_channels=[512, 1024],
        feat_strides=[16, 32],
        hidden_dim=128,
        use_encoder_idx=[1],
        dim_feedforward=512,
        expansion=0.34,
        depth_mult=0.5),
    in_channels=[128, 128],
    feat_strides=[16, 32],
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            embed_dims=128,
            feedforward_channels=512,
            num_levels=2,
            num_points=[6, 6])),
    bbox_head=dict(embed_dims=128, num_pred_layer=3))

# schedule (official dfine_hgnetv2_n_coco.yml): total batch 128 (4 GPUs x 32),
# AdamW lr 8e-4 / backbone 4e-4, weight decay 1e-4, 160 epochs; strong
# augmentation stops at epoch 148; no batch multi-scale.
train_dataloader = dict(batch_size=32)
optim_wrapper = dict(
    optimizer=dict(lr=8e-4, weight_decay=1e-4),
    paramwise_cfg=dict(backbone_lr=4e-4, official_regex_style='nsm'))
max_epochs = 160
stop_epoch = 148
train_cfg = dict(max_epochs=max_epochs)
custom_hooks = [
    dict(
        type='EMAHook',
        ema_type='DFINEModelEMA',
        decay=0.9999,
        warmups=1000,
        update_buffers=True,
        priority=49),
    dict(
        type='DFINEStopAugHook',
        stop_epoch=stop_epoch,
        reload_best_stage1=True),
]
auto_scale_lr = dict(base_batch_size=128)
