"""Official D-FINE checkpoint -> :class:`DFINE` state dict.

This is the one place where official state-dict keys (Peterande/D-FINE) are
mapped to this plugin's keys, and where an official file is converted
(:func:`convert_checkpoint`); ``tools/convert_official_ckpt.py`` is its
command line and the parity tests use :func:`convert_state_dict`.

Key table (first matching prefix wins; the rest of the key is kept)::

    official                              ours
    backbone.                          -> backbone.
    encoder.                           -> neck.
    decoder.input_proj.                -> input_proj.
    decoder.anchors / valid_mask       -> anchors / valid_mask   (640 buffers)
    decoder.up, decoder.decoder.up     -> decoder.up             (one buffer)
    decoder.reg_scale,
      decoder.decoder.reg_scale        -> decoder.reg_scale      (one buffer)
    decoder.decoder.layers.            -> decoder.layers.
    decoder.query_pos_head.            -> decoder.query_pos_head.
    decoder.decoder.lqe_layers.        -> bbox_head.lqe_layers.
    decoder.dec_score_head.            -> bbox_head.cls_branches.
    decoder.dec_bbox_head.             -> bbox_head.reg_branches.
    decoder.pre_bbox_head.             -> bbox_head.pre_reg_branch.
    decoder.enc_score_head.            -> bbox_head.enc_cls_branch.
    decoder.enc_bbox_head.             -> bbox_head.enc_reg_branch.
    decoder.enc_output.proj.           -> memory_trans_fc.
    decoder.enc_output.norm.           -> memory_trans_norm.
    decoder.denoising_class_embed.     -> dn_query_generator.label_embedding.

The official model registers ``up`` and ``reg_scale`` twice (the same
Parameter under ``decoder.`` and ``decoder.decoder.``); both copies are read
and must agree, and become one buffer each.  Values and dtypes are kept
(``reg_scale`` is int64 officially and in our model; ``up`` is float32 and
may differ from 0.5 by a few ulp after EMA averaging, so it is loaded rather
than recomputed).
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .errors import CheckpointMismatchError
from .fit import state_dict_fit, tensor_shapes
from .variants import describe

#: (official prefix, our prefix); exact keys are listed as full names.
KEY_MAP: List[Tuple[str, str]] = [
    ('decoder.decoder.layers.', 'decoder.layers.'),
    ('decoder.decoder.lqe_layers.', 'bbox_head.lqe_layers.'),
    ('decoder.decoder.up', 'decoder.up'),
    ('decoder.decoder.reg_scale', 'decoder.reg_scale'),
    ('decoder.up', 'decoder.up'),
    ('decoder.reg_scale', 'decoder.reg_scale'),
    ('decoder.anchors', 'anchors'),
    ('decoder.valid_mask', 'valid_mask'),
    ('decoder.input_proj.', 'input_proj.'),
    ('decoder.query_pos_head.', 'decoder.query_pos_head.'),
    ('decoder.dec_score_head.', 'bbox_head.cls_branches.'),
    ('decoder.dec_bbox_head.', 'bbox_head.reg_branches.'),
    ('decoder.pre_bbox_head.', 'bbox_head.pre_reg_branch.'),
    ('decoder.enc_score_head.', 'bbox_head.enc_cls_branch.'),
    ('decoder.enc_bbox_head.', 'bbox_head.enc_reg_branch.'),
    ('decoder.enc_output.proj.', 'memory_trans_fc.'),
    ('decoder.enc_output.norm.', 'memory_trans_norm.'),
    ('decoder.denoising_class_embed.', 'dn_query_generator.label_embedding.'),
    ('encoder.', 'neck.'),
    ('backbone.', 'backbone.'),
]

#: official keys that hold the same Parameter twice (second -> first)
DUPLICATE_KEYS = {
    'decoder.decoder.up': 'decoder.up',
    'decoder.decoder.reg_scale': 'decoder.reg_scale',
}


def map_key(key: str) -> str:
    """Our key for an official key (raises ``KeyError`` if unknown)."""
    for src, dst in KEY_MAP:
        if src.endswith('.'):
            if key.startswith(src):
                return dst + key[len(src):]
        elif key == src:
            return dst
    raise KeyError(f'official key {key!r} matches no rule of the D-FINE '
                   'key table (dfine_mmdet/checkpoint/official.py)')


def extract_state_dict(ckpt: Mapping) -> Tuple[Dict[str, Tensor], str]:
    """Pick the weights from an official checkpoint file's content.

    Accepts a training checkpoint (``ema.module`` preferred, as the official
    loaders), a released file ``{'model': ...}``, or a bare state dict.

    Returns:
        tuple: ``(state_dict, source)`` with ``source`` one of
        ``'ema.module'``, ``'model'``, ``'state_dict'``.
    """
    if not isinstance(ckpt, Mapping):
        raise TypeError(f'expected a dict checkpoint, got {type(ckpt)}')
    ema = ckpt.get('ema')
    if isinstance(ema, Mapping) and isinstance(ema.get('module'), Mapping):
        return dict(ema['module']), 'ema.module'
    if isinstance(ckpt.get('model'), Mapping):
        return dict(ckpt['model']), 'model'
    if any(k.startswith(('backbone.', 'decoder.')) for k in ckpt):
        return dict(ckpt), 'state_dict'
    raise KeyError('no official D-FINE weights found: expected '
                   "ckpt['ema']['module'], ckpt['model'] or a bare state dict "
                   f'(top-level keys: {sorted(ckpt)[:8]})')


def detect_variant(sd: Mapping[str, Tensor]) -> dict:
    """Variant letter and class count of an official state dict, from tensor
    shapes (keys mapped with :data:`KEY_MAP`, then read by
    :func:`~.variants.describe`, the table of :data:`~.variants.VARIANTS`).

    Returns:
        dict: ``variant`` ('n', 's', 'm', 'l', 'x' or None if unknown),
        ``num_classes``, ``num_decoder_layers``, ``embed_dims``,
        ``backbone`` (HGNetV2 arch or None), ``reg_scale``.
    """
    for key in ('decoder.enc_score_head.weight', 'decoder.reg_scale',
                'backbone.stem.stem1.conv.weight'):
        if key not in sd:
            raise KeyError(f'official key {key!r} is missing: not a D-FINE '
                           'checkpoint?')
    shapes = {}
    for key, shape in tensor_shapes(sd).items():
        try:
            shapes[map_key(key)] = shape
        except KeyError:
            continue  # described from the keys the table knows
    info = describe(shapes)
    return dict(
        variant=info.get('variant'),
        num_classes=info.get('num_classes'),
        num_decoder_layers=info.get('decoder_layers'),
        embed_dims=info.get('embed_dims'),
        backbone=info['arch'],
        reg_scale=float(sd['decoder.reg_scale'].reshape(-1)[0]))


def convert_state_dict(sd: Mapping[str, Tensor]) -> 'OrderedDict[str, Tensor]':
    """Map an official state dict to :class:`DFINE` keys.

    Duplicated official entries (``up``, ``reg_scale``) are checked to agree
    and merged.

    Raises:
        CheckpointMismatchError: when duplicated entries disagree.
        KeyError: for an official key the table does not know.
    """
    out: 'OrderedDict[str, Tensor]' = OrderedDict()
    for key, value in sd.items():
        if key in DUPLICATE_KEYS:
            twin = DUPLICATE_KEYS[key]
            if twin in sd and not torch.equal(
                    value.reshape(-1).double(), sd[twin].reshape(-1).double()):
                raise CheckpointMismatchError(
                    f'{key} = {value.tolist()} differs from {twin} = '
                    f'{sd[twin].tolist()}; the official model ties them')
            if twin in sd:
                continue
        out[map_key(key)] = value
    return out


def default_config(info: Mapping,
                   root: Optional[str] = None,
                   deim: bool = False) -> Optional[str]:
    """Config of this repository for a :func:`detect_variant` result
    (``configs/dfine/dfine_hgnetv2_{v}_coco.py`` for 80 classes,
    ``configs/dfine/objects365/dfine_hgnetv2_{v}_obj365.py`` for 366;
    with ``deim``, a DEIM-D-FINE checkpoint (ShihuaHuang95/DEIM, same tensor
    layout as D-FINE): ``configs/deim_dfine/deim_hgnetv2_{v}_coco.py``), or
    None. ``root``: the repository (default: the one holding this package,
    i.e. a source checkout)."""
    v = info.get('variant')
    if v is None:
        return None
    root = root or osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    if deim:
        path = osp.join(root, 'configs', 'deim_dfine',
                        f'deim_hgnetv2_{v}_coco.py')
        return path if info['num_classes'] == 80 and osp.isfile(path) \
            else None
    if info['num_classes'] == 366:
        path = osp.join(root, 'configs', 'dfine', 'objects365',
                        f'dfine_hgnetv2_{v}_obj365.py')
    elif info['num_classes'] == 80:
        path = osp.join(root, 'configs', 'dfine', f'dfine_hgnetv2_{v}_coco.py')
    else:
        return None
    return path if osp.isfile(path) else None


def build_model_state(config: str) -> Dict[str, Tensor]:
    """``state_dict()`` of the model of ``config`` (no weights are loaded or
    downloaded)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401  (registers the modules)
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(cfg.model).state_dict()


def dataset_meta(num_classes: int) -> Optional[dict]:
    """Class names for the checkpoint meta (used by ``init_detector``)."""
    if num_classes == 80:
        from mmdet.datasets import CocoDataset
        return dict(classes=tuple(CocoDataset.METAINFO['classes']))
    if num_classes == 366:
        # official Objects365 models: label = raw category id, row 0 unused
        from mmdet.datasets import Objects365V2Dataset
        return dict(
            classes=('__unused__', ) +
            tuple(Objects365V2Dataset.METAINFO['classes']))
    return None


def convert_checkpoint(src: str,
                       dst: str,
                       config: Optional[str] = None,
                       log: Callable[[str], None] = print,
                       deim: bool = False) -> dict:
    """Convert the official file ``src`` to the plugin checkpoint ``dst``.

    Args:
        src (str): official ``.pth`` (released ``{'model': ...}``, training
            checkpoint or bare state dict).
        dst (str): output ``{'state_dict': ..., 'meta': ...}``; it loads
            strictly with ``mmdet.apis.init_detector(config, dst)``.
        config (str, optional): config the weights must fit exactly; default
            :func:`default_config` of the detected variant (no check when
            there is none).
        log (callable): where progress lines go.
        deim (bool): ``src`` is a DEIM-D-FINE checkpoint: the default config
            is ``configs/deim_dfine/deim_hgnetv2_{v}_coco.py`` (SiLU decoder).

    Returns:
        dict: the :func:`detect_variant` result.

    Raises:
        CheckpointMismatchError: when the weights do not fit ``config``
            (nothing is written).
    """
    ckpt = torch.load(src, map_location='cpu', weights_only=False)
    official, source = extract_state_dict(ckpt)
    info = detect_variant(official)
    variant = info['variant'].upper() if info['variant'] else 'unknown'
    log(f'loaded {src}: {len(official)} entries from {source!r}')
    log(f'detected D-FINE-{variant}: {info["num_classes"]} classes, '
        f'{info["num_decoder_layers"]} decoder layers, decoder width '
        f'{info["embed_dims"]}, reg_scale {info["reg_scale"]:g}')
    state_dict = convert_state_dict(official)

    if config is None:
        config = default_config(info, deim=deim)
        if config is not None:
            log(f'verifying against {osp.relpath(config, os.getcwd())}')
    if config is not None:
        problems = state_dict_fit(
            tensor_shapes(build_model_state(config)),
            tensor_shapes(state_dict)).report()
        if problems:
            raise CheckpointMismatchError(
                f'{src} (D-FINE-{variant}, {info["num_classes"]} classes) '
                f'does not match {config}:\n{problems}')
        log(f'all {len(state_dict)} entries match {config}')
    else:
        log('no config to verify against (pass --config)')

    meta = dict(
        converted_from=osp.basename(src),
        official_source=source,
        dfine_variant=info['variant'],
        num_classes=info['num_classes'],
        config=osp.basename(config) if config else None)
    ds_meta = dataset_meta(info['num_classes'])
    if ds_meta is not None:
        meta['dataset_meta'] = ds_meta
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=meta), dst)
    log(f'wrote {len(state_dict)} entries to {dst}')
    return info
