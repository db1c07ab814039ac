"""Building detectors for measurements: one builder for every tool.

:func:`build_detector` builds the model of a plugin or MMDetection config
with its own random initialisation and nothing downloaded (``Pretrained``
``init_cfg`` entries removed), in eval mode; the latency, comparison, FLOP
and export tools all use it, so "the model" means the same thing in each
of their tables.
"""
import os
import os.path as osp
from typing import Any, Optional, Tuple

#: root of a source checkout (``configs/`` lives there)
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def dfine_config(variant: str, dataset: str = 'coco') -> str:
    """Path of ``configs/dfine/dfine_hgnetv2_{variant}_{dataset}.py``."""
    return osp.join(REPO_ROOT, 'configs', 'dfine',
                    f'dfine_hgnetv2_{variant}_{dataset}.py')


def resolve_config(cfg: str) -> str:
    """File path of ``cfg``: a path (absolute, from the working directory or
    from the repository root) or ``mmdet::<path>`` in the installed
    MMDetection's configs."""
    if cfg.startswith('mmdet::'):
        import mmdet
        path = osp.join(
            osp.dirname(mmdet.__file__), '.mim', 'configs',
            cfg[len('mmdet::'):])
    else:
        path = cfg if osp.isabs(cfg) else osp.join(os.getcwd(), cfg)
        if not osp.exists(path):
            path = osp.join(REPO_ROOT, cfg)
    if not osp.isfile(path):
        raise FileNotFoundError(f'config {cfg!r} not found (looked at {path})')
    return path


def drop_pretrained(node: Any) -> None:
    """Remove ``init_cfg=dict(type='Pretrained', ...)`` everywhere in a
    config node, in place (nothing downloads)."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            node['init_cfg'] = None
        for v in node.values():
            drop_pretrained(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            drop_pretrained(v)


def build_detector(cfg: Any,
                   size: Optional[int] = None,
                   seed: Optional[int] = 0,
                   init_weights: bool = True) -> Tuple[Any, Any]:
    """Eval-mode detector of a config, with random weights, and its config.

    Args:
        cfg (str | Config): a config (path or ``mmdet::`` name, see
            :func:`resolve_config`) or a loaded ``Config``.
        size (int, optional): D-FINE precomputes its anchors for
            ``model.eval_spatial_size``; with ``size`` that becomes
            ``(size, size)``, so the model runs at the measured input size.
        seed (int, optional): ``torch.manual_seed`` before building.
        init_weights (bool): call ``init_weights()`` (each model's own
            initialisation, e.g. the p=0.01 classification bias prior of
            RTMDet/YOLOX/DETR heads: without it, random scores near 0.5 let
            thousands of boxes through the score threshold and NMS detectors
            are timed on a post-processing load they never see once
            trained).

    Returns:
        tuple: ``(model, cfg)``.
    """
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import dfine_mmdet  # noqa: F401  (registers the plugin)
    register_all_modules(init_default_scope=True)
    if not isinstance(cfg, Config):
        cfg = Config.fromfile(resolve_config(cfg))
    if size is not None and cfg.model.get('eval_spatial_size') is not None:
        cfg.model.eval_spatial_size = (size, size)
    drop_pretrained(cfg.model)
    if seed is not None:
        torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    if init_weights:
        model.init_weights()
    return model.eval(), cfg


def count_params(model: Any) -> int:
    """Number of parameter elements, counted as the official D-FINE code
    does: its ``up`` and ``reg_scale`` are (frozen) Parameters, here decoder
    buffers, so their 2 elements are added back when present."""
    n = sum(p.numel() for p in model.parameters())
    decoder = getattr(model, 'decoder', None)
    for name in ('up', 'reg_scale'):
        buf = getattr(decoder, name, None)
        if buf is not None and not any(buf is p for p in model.parameters()):
            n += buf.numel()
    return n


def data_samples(h: int, w: int, batch: int = 1) -> list:
    """``DetDataSample`` list with the meta of an unpadded ``h x w`` input."""
    from mmdet.structures import DetDataSample
    meta = dict(
        img_shape=(h, w),
        batch_input_shape=(h, w),
        ori_shape=(h, w),
        pad_shape=(h, w),
        scale_factor=(1.0, 1.0))
    return [DetDataSample(metainfo=dict(meta)) for _ in range(batch)]
