"""Shared inputs of the deployment tests: configs, images, a random D-FINE-N.

The weights are random: the official init, then N(0, 0.02) noise on every
parameter. The official init zeroes the last layer of every box / corner
branch, so without the noise the FDR refinements and the LQE would
contribute nothing. The backbone, the neck and the query-selection layers get
N(0, 0.1) instead: their more varied features separate the encoder scores at
the top-300 query-selection boundary (``test_query_selection_is_well_posed``
checks it). With near-equal scores there (0.02 everywhere gave gaps of 2e-7
logits), PyTorch itself selects different queries at batch 1 and batch 2,
and no backend comparison can be exact.
"""
import os.path as osp

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL_CFG = osp.join(ROOT, 'configs/dfine/dfine_hgnetv2_n_coco.py')
DEPLOY_DIR = osp.join(ROOT, 'configs/deploy')
ORT_STATIC = osp.join(DEPLOY_DIR, 'detection_onnxruntime_static-640x640.py')
ORT_DYNAMIC = osp.join(DEPLOY_DIR,
                       'detection_onnxruntime_dynamic-batch-640x640.py')
TRT_FP16_DYNAMIC = osp.join(
    DEPLOY_DIR, 'detection_tensorrt-fp16_dynamic-batch-640x640.py')

WEIGHT_NOISE = 0.02
FEATURE_NOISE = 0.1
FEATURE_PARAMS = ('backbone.', 'neck.', 'memory_trans_',
                  'bbox_head.enc_cls_branch.')


def images():
    """Two synthetic BGR uint8 images, 480x640 and 640x512 (non-square, so
    the ``scale_factor`` mapping back to the original image is exercised)."""
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        rng.integers(0, 256, (640, 512, 3), dtype=np.uint8)
    ]


def save_random_checkpoint(path: str,
                           model_cfg: str = MODEL_CFG,
                           seed: int = 0) -> str:
    """Write the random model of ``model_cfg`` (D-FINE-N by default) with the
    noise described above as an mmdet checkpoint (``seed``: torch seed of
    the init and the noise)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine import Config
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(model_cfg)
    cfg.model.backbone.init_cfg = None  # random, not ImageNet-pretrained
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = FEATURE_NOISE if name.startswith(
                FEATURE_PARAMS) else WEIGHT_NOISE
            p.add_(torch.randn_like(p) * noise)
    torch.save({'state_dict': model.state_dict()}, path)
    return path
