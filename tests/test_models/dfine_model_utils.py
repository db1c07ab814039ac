"""Helpers shared by the D-FINE detector tests: build a model from this
repo's configs and load official random weights through the converter."""
import os.path as osp

import numpy as np
import torch

PROJECT_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(PROJECT_ROOT, 'configs', 'dfine')


def config_path(variant: str, family: str = 'coco') -> str:
    if family == 'coco':
        return osp.join(CONFIG_DIR, f'dfine_hgnetv2_{variant}_coco.py')
    return osp.join(CONFIG_DIR, 'objects365',
                    f'dfine_hgnetv2_{variant}_{family}.py')


def load_config(variant: str, family: str = 'coco'):
    from mmengine.config import Config
    return Config.fromfile(config_path(variant, family))


def resolved_model_cfg(cfg):
    """A copy of ``cfg.model`` with the values ``DFINE`` derives filled in by
    its own helpers: :func:`fill_shared_settings` (``num_levels``, the
    neck's ``feat_strides``, the head's and ``dn_cfg``'s shared fields) and
    :func:`fill_in_channels` from the built neck (cheap: no backbone)."""
    import copy

    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    from dfine_mmdet.models.detectors.dfine import (fill_in_channels,
                                                    fill_shared_settings)
    init_default_scope('mmdet')
    m = copy.deepcopy(cfg.model)
    fill_shared_settings(m.neck, m.decoder, m.bbox_head, m.get('dn_cfg'),
                         m.get('feat_strides', (8, 16, 32)))
    neck = MODELS.build(copy.deepcopy(m.neck))
    m.in_channels = fill_in_channels(m.get('in_channels'), neck)
    return m


def build_model(variant: str, family: str = 'coco', cfg=None):
    """Model of ``configs/dfine/dfine_hgnetv2_{variant}_{family}.py``."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = load_config(variant, family) if cfg is None else cfg
    return MODELS.build(cfg.model)


def official_random_state_dict(parity_dir: str, variant: str):
    """(fixture npz, official-format random state dict) of a COCO variant
    (parity README section 1)."""
    from official_random_weights import (load_fixed_buffers, load_keys_spec,
                                         make_state_dict)
    fx = np.load(osp.join(parity_dir, f'dfine_{variant}_coco.npz'))
    sd = make_state_dict(
        load_keys_spec(
            osp.join(parity_dir, f'dfine_{variant}_coco_keys.json')),
        seed=int(fx['meta/weight_seed']),
        fixed=load_fixed_buffers(fx),
        gain=float(fx['meta/weight_gain']))
    return fx, sd


def converted_model(parity_dir: str, variant: str):
    """(fixture, eval model with the official random weights loaded strictly
    through the converter)."""
    from dfine_mmdet.checkpoint.official import convert_state_dict
    fx, sd = official_random_state_dict(parity_dir, variant)
    model = build_model(variant)
    model.load_state_dict(convert_state_dict(sd), strict=True)
    return fx, model.eval()


def parity_inputs(parity_dir: str) -> torch.Tensor:
    """The fixture batch as the network sees it: [2, 3, 640, 640] in [0, 1]."""
    images = np.load(osp.join(parity_dir, 'parity_input.npz'))['images_uint8']
    return torch.from_numpy(images).float() / 255


def data_samples_for(orig_sizes_wh, input_hw=(640, 640)):
    """DetDataSamples of a batch resized (no ratio kept) from the original
    ``(w, h)`` sizes to ``input_hw``, with mmdet's meta keys."""
    from mmdet.structures import DetDataSample
    samples = []
    in_h, in_w = input_hw
    for w, h in orig_sizes_wh:
        w, h = int(w), int(h)
        samples.append(
            DetDataSample(
                metainfo=dict(
                    img_shape=(in_h, in_w),
                    batch_input_shape=(in_h, in_w),
                    ori_shape=(h, w),
                    scale_factor=(in_w / w, in_h / h))))
    return samples
