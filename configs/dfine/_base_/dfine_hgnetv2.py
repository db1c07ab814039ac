# D-FINE (arXiv 2410.13842) with an HGNetV2 backbone: model + test pipeline.
# Defaults reproduce the official `configs/dfine/include/dfine_hgnetv2.yml`
# (= D-FINE-L: HGNetV2-B4, 6 decoder layers); the variant files override the
# differing fields.  Training parts (train pipeline, schedule, optimizer, EMA)
# are added by the training configs.
_base_ = [
    'mmdet::_base_/default_runtime.py',
    'mmdet::_base_/datasets/coco_detection.py',
]
custom_imports = dict(imports=['dfine_mmdet'], allow_failed_imports=False)

# model
num_classes = 80
model = dict(
    type='DFINE',
    num_queries=300,
    # official RGB [0, 1] input: (x - 0) / 255, no mean/std normalisation
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[0.0, 0.0, 0.0],
        std=[255.0, 255.0, 255.0],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='HGNetV2',
        arch='B4',
        use_lab=False,
        out_indices=(1, 2, 3),
        frozen_stem=True,
        freeze_norm=True),
    neck=dict(
        type='HybridEncoder',
        in_channels=[512, 1024, 2048],
        feat_strides=[8, 16, 32],
        hidden_dim=256,
        use_encoder_idx=[2],
        num_encoder_layers=1,
        nhead=8,
        dim_feedforward=1024,
        dropout=0.0,
        enc_act='gelu',
        expansion=1.0,
        depth_mult=1.0,
        act='silu'),
    # decoder input levels = neck outputs (1x1 conv + BN where != 256)
    in_channels=[256, 256, 256],
    feat_strides=[8, 16, 32],
    # shape of the official `anchors` / `valid_mask` buffers; other input
    # sizes get anchors generated for their actual feature shapes
    eval_spatial_size=(640, 640),
    decoder=dict(
        num_layers=6,
        eval_idx=-1,
        reg_max=32,
        reg_scale=4.0,
        up=0.5,
        layer_cfg=dict(
            embed_dims=256,
            num_heads=8,
            feedforward_channels=1024,
            dropout=0.0,
            num_levels=3,
            num_points=[3, 6, 3])),
    dn_cfg=dict(num_denoising=100, label_noise_ratio=0.5, box_noise_scale=1.0),
    bbox_head=dict(
        type='DFINEHead',
        num_classes=num_classes,
        embed_dims=256,
        num_pred_layer=6,
        reg_max=32,
        criterion=dict(
            type='DFINECriterion',
            num_classes=num_classes,
            reg_max=32,
            assigner=dict(
                type='DFINEHungarianAssigner',
                cost_class=2.0,
                cost_bbox=5.0,
                cost_giou=2.0,
                alpha=0.25,
                gamma=2.0),
            go_lsd_assigner=dict(type='GOLSDAssigner'),
            loss_vfl=dict(
                type='DFINEVarifocalLoss',
                alpha=0.75,
                gamma=2.0,
                loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=5.0),
            loss_giou=dict(type='GIoULoss', loss_weight=2.0),
            loss_fgl=dict(
                type='FineGrainedLocalizationLoss', loss_weight=0.15),
            loss_ddf=dict(
                type='DecoupledDistillationFocalLoss',
                temperature=5.0,
                loss_weight=1.5))),
    train_cfg=None,
    test_cfg=dict(max_per_img=300))

# test pipeline
# Official eval preprocessing: PIL decode, Resize((640, 640)) bilinear without
# keeping the ratio, RGB, /255.  Boxes are mapped back to the original image
# through `scale_factor`.
backend_args = None
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        backend_args=backend_args),
    dict(
        type='Resize',
        scale=(640, 640),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
