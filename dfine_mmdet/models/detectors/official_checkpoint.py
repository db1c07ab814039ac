"""Official D-FINE checkpoint -> :class:`DFINE` state dict.

This is the one place where official state-dict keys (Peterande/D-FINE) are
mapped to this plugin's keys; ``tools/convert_official_ckpt.py`` and the tests
use it.

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
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

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

#: Architecture signature -> variant letter:
#: (stem output channels of HGNetV2, number of decoder layers, decoder width)
VARIANTS = {
    (16, 3, 128): 'n',  # B0
    (16, 3, 256): 's',  # B0
    (32, 4, 256): 'm',  # B2
    (48, 6, 256): 'l',  # B4
    (64, 6, 256): 'x',  # B5
}


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model / config."""


def map_key(key: str) -> str:
    """Our key for an official key (raises ``KeyError`` if unknown)."""
    for src, dst in KEY_MAP:
        if src.endswith('.'):
            if key.startswith(src):
                return dst + key[len(src):]
        elif key == src:
            return dst
    raise KeyError(f'official key {key!r} matches no rule of the D-FINE '
                   'key table (dfine_mmdet/models/detectors/'
                   'official_checkpoint.py)')


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
    """Variant letter and class count from tensor shapes.

    Returns:
        dict: ``variant`` ('n', 's', 'm', 'l', 'x' or None if unknown),
        ``num_classes``, ``num_decoder_layers``, ``embed_dims``,
        ``stem_channels``, ``reg_scale``.
    """

    def _get(key):
        if key not in sd:
            raise KeyError(f'official key {key!r} is missing: not a D-FINE '
                           'checkpoint?')
        return sd[key]

    num_classes = int(_get('decoder.enc_score_head.weight').shape[0])
    embed_dims = int(_get('decoder.query_pos_head.layers.1.weight').shape[0])
    stem = int(_get('backbone.stem.stem4.conv.weight').shape[0])
    layer_ids = {
        int(k.split('.')[3])
        for k in sd if k.startswith('decoder.decoder.layers.')
    }
    num_layers = len(layer_ids)
    reg_scale = float(_get('decoder.reg_scale').reshape(-1)[0])
    return dict(
        variant=VARIANTS.get((stem, num_layers, embed_dims)),
        num_classes=num_classes,
        num_decoder_layers=num_layers,
        embed_dims=embed_dims,
        stem_channels=stem,
        reg_scale=reg_scale)


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


def compare_with_model(converted: Mapping[str, Tensor],
                       model_state: Mapping[str, Tensor],
                       max_items: int = 5) -> Optional[str]:
    """Describe the first differences between a converted state dict and a
    model's ``state_dict()`` (missing keys, unexpected keys, shape
    mismatches), or return None when they fit exactly."""
    missing = [k for k in model_state if k not in converted]
    unexpected = [k for k in converted if k not in model_state]
    shapes = [
        f'{k}: checkpoint {tuple(converted[k].shape)} vs model '
        f'{tuple(model_state[k].shape)}' for k in converted
        if k in model_state and converted[k].shape != model_state[k].shape
    ]
    lines = []
    if shapes:
        lines.append(f'{len(shapes)} shape mismatch(es), first: ' +
                     '; '.join(shapes[:max_items]))
    if missing:
        lines.append(f'{len(missing)} key(s) missing from the checkpoint, '
                     'first: ' + ', '.join(missing[:max_items]))
    if unexpected:
        lines.append(f'{len(unexpected)} unexpected key(s) in the checkpoint,'
                     ' first: ' + ', '.join(unexpected[:max_items]))
    return '\n'.join(lines) if lines else None
