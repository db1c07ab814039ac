# D-FINE training recipe on COCO (D-FINE-L model): composition of the model,
# dataset and schedule bases, plus the ImageNet-pretrained backbone file.
# Reproduces the official configs/dfine/include/{dataloader,optimizer}.yml,
# configs/dataset/coco_detection.yml and configs/runtime.yml (see the bases).
_base_ = [
    './datasets/coco.py',
    './models/dfine_hgnetv2.py',
    './schedules/dfine_adamw.py',
]

# The official recipe starts from the ImageNet-pretrained HGNetV2
# (`HGNetv2.pretrained: True`, the authors' PPHGNetV2_<arch>_stage1.pth release
# files). Nothing is downloaded: put the file at this path, relative to the
# directory training runs in (each variant names its arch's file), or pass
# `--cfg-options model.backbone.init_cfg.checkpoint=/path/to/file.pth`. A
# missing file stops training with an error naming the path. Testing and
# inference (`init_detector`, `tools/test.py`) load a full checkpoint and never
# read this file.
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/PPHGNetV2_B4_stage1.pth')))
