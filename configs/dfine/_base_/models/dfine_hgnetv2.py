# D-FINE (arXiv 2410.13842) with an HGNetV2 backbone: the model only (no
# dataset, no runtime).  Defaults reproduce the official
# `configs/dfine/include/dfine_hgnetv2.yml` (= D-FINE-L: HGNetV2-B4, 6 decoder
# layers); the size files override the differing fields.  Compose it with a
# dataset base (`../datasets/coco.py`, which also holds the D-FINE test
# pipeline) and `mmdet::_base_/default_runtime.py`.
custom_imports = dict(imports=['dfine_mmdet'], allow_failed_imports=False)

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
        embed_dims=256,
        use_encoder_idx=[2],
        num_encoder_layers=1,
        num_heads=8,
        feedforward_channels=1024,
        dropout=0.0,
        enc_act='gelu',
        expansion=1.0,
        depth_mult=1.0,
        act='silu'),
    # strides of the decoder levels; filled into neck.feat_strides
    feat_strides=[8, 16, 32],
    # shape of the official `anchors` / `valid_mask` buffers; other input
    # sizes get anchors generated for their actual feature shapes
    eval_spatial_size=(640, 640),
    # Filled in by DFINE from one place: embed_dims (from decoder.layer_cfg)
    # and num_pred_layer (= decoder.num_layers) into the head and dn_cfg,
    # num_classes (from bbox_head) into dn_cfg, decoder.layer_cfg.num_levels
    # (= len(feat_strides)), in_channels (= neck.out_channels; 1x1 conv + BN
    # where != the decoder width); the decoder decodes with the head's
    # bbox_coder (reg_max, reg_scale, up).
    decoder=dict(
        num_layers=6,
        eval_idx=-1,
        layer_cfg=dict(
            embed_dims=256,
            num_heads=8,
            feedforward_channels=1024,
            dropout=0.0,
            num_points=[3, 6, 3])),
    dn_cfg=dict(num_denoising=100, label_noise_ratio=0.5, box_noise_scale=1.0),
    bbox_head=dict(
        type='DFINEHead',
        num_classes=num_classes,
        bbox_coder=dict(
            type='FDRBBoxCoder', reg_max=32, reg_scale=4.0, up=0.5),
        assigner=dict(
            type='DFINEHungarianAssigner',
            cost_class=2.0,
            cost_bbox=5.0,
            cost_giou=2.0,
            alpha=0.25,
            gamma=2.0),
        go_lsd_assigner=dict(type='GOLSDAssigner'),
        loss_cls=dict(
            type='DFINEVarifocalLoss', alpha=0.75, gamma=2.0, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        loss_fgl=dict(type='FineGrainedLocalizationLoss', loss_weight=0.15),
        loss_ddf=dict(
            type='DecoupledDistillationFocalLoss',
            temperature=5.0,
            loss_weight=1.5)),
    train_cfg=None,
    test_cfg=dict(max_per_img=300))
