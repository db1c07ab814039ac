"""Checkpoint guard: refuse a checkpoint that does not fit the built D-FINE.

MMEngine loads ``load_from`` / ``init_detector`` checkpoints with
``strict=False``: a D-FINE-N checkpoint given to a D-FINE-S config "loads"
after a wall of size-mismatch and missing-key warnings and then runs with
mostly random weights. :func:`install_checkpoint_guard` registers a
``load_state_dict`` pre-hook on the detector that compares the incoming
state dict with the model's own **before** any tensor is copied and raises
one :class:`CheckpointMismatchError` that says

* which D-FINE variant the checkpoint looks like and which one the config
  builds (HGNetV2 arch, ``embed_dims``, decoder layers, classes; named N/S/M/
  L/X when the triple is one of the official sizes);
* when the class count alone differs: to add ``ClassHeadAdaptHook`` (which
  adapts the class rows in ``after_load_checkpoint``, before this guard runs,
  so a run with the hook passes);
* when the keys are those of an **unconverted official** checkpoint
  (``encoder.*``, ``decoder.decoder.*``, ``decoder.dec_score_head.*``): to run
  ``tools/convert_official_ckpt.py`` first;
* otherwise the first mismatching / missing keys with both shapes.

Opt-out for intentional partial loads (e.g. fine-tuning S from N weights):
``model = dict(allow_partial_checkpoint=True)`` in the config, or
``install_checkpoint_guard(model, enabled=False)``.

The EMA copy made by MMEngine's ``EMAHook`` (``ema_model.module`` is a deep
copy of the detector) carries the same hook; keys are read relative to the
``prefix`` the hook is called with.
"""
import re
from typing import Dict, Tuple

import torch

from .errors import CheckpointMismatchError
from .fit import state_dict_fit, tensor_shapes
from .variants import describe, format_description

__all__ = ['check_state_dict', 'install_checkpoint_guard']

#: key patterns that only an unconverted official checkpoint has
OFFICIAL_KEY_PATTERNS = (r'^encoder\.', r'^decoder\.decoder\.',
                         r'^decoder\.dec_score_head\.')

#: class-dependent keys (adapted by ClassHeadAdaptHook)
CLASS_KEY_PATTERNS = (r'^bbox_head\.cls_branches\.', r'^bbox_head\.enc_cls_'
                      r'branch\.', r'^dn_query_generator\.label_embedding\.')


def check_state_dict(model_shapes: Dict[str, Tuple[int, ...]],
                     ckpt_shapes: Dict[str, Tuple[int, ...]],
                     source: str = 'the checkpoint') -> None:
    """Raise :class:`CheckpointMismatchError` when ``ckpt_shapes`` does not
    fit ``model_shapes`` (both key -> shape without prefix); see the module
    docstring. Keys the model has and the checkpoint lacks count as a
    mismatch, except BN ``num_batches_tracked`` counters; keys only the
    checkpoint has are left to MMEngine's warning."""
    if not ckpt_shapes:
        raise CheckpointMismatchError(
            f'{source} holds no weight tensors at the top level of its '
            'state_dict (an empty or nested dict). An official D-FINE '
            "checkpoint keeps them under 'model' / 'ema'; convert it first: "
            'python tools/convert_official_ckpt.py OFFICIAL.pth OUT.pth')
    fit = state_dict_fit(model_shapes, ckpt_shapes)
    mismatched = fit.mismatched
    # BN step counters: official L/X backbones are saved without them
    missing = [k for k in fit.missing if not k.endswith('num_batches_tracked')]
    # class-dependent keys that ClassHeadAdaptHook removed on purpose (the
    # new class set keeps its init): logged, not an error
    missing_cls = [
        k for k in missing if any(re.match(p, k) for p in CLASS_KEY_PATTERNS)
    ]
    missing = [k for k in missing if k not in missing_cls]
    if missing_cls and not missing and not mismatched:
        from mmengine.logging import print_log
        print_log(
            f'{source}: {len(missing_cls)} class-dependent keys are not in '
            f'the checkpoint and keep their initialisation (e.g. '
            f'{missing_cls[0]})',
            logger='current')
        return
    if not mismatched and not missing:
        return
    official = [
        k for k in ckpt_shapes if any(
            re.match(p, k) for p in OFFICIAL_KEY_PATTERNS)
    ]
    if official and missing:
        raise CheckpointMismatchError(
            f'{source} is an unconverted official D-FINE checkpoint (keys '
            f'such as {official[0]!r}); convert it first: python '
            'tools/convert_official_ckpt.py OFFICIAL.pth OUT.pth')
    ours, theirs = describe(model_shapes), describe(ckpt_shapes)
    class_only = mismatched and not missing and all(
        any(re.match(p, k) for p in CLASS_KEY_PATTERNS)
        for k, _, _ in mismatched)
    if class_only:
        raise CheckpointMismatchError(
            f'{source} has {theirs.get("num_classes")} classes but the config '
            f'builds {ours.get("num_classes")} (e.g. {mismatched[0][0]}: '
            f'checkpoint {tuple(mismatched[0][1])} vs model '
            f'{tuple(mismatched[0][2])}). To fine-tune onto the new class '
            'set, '
            "add dict(type='ClassHeadAdaptHook') to custom_hooks (it "
            're-initialises or maps the class rows); for a deliberate partial '
            'load set model.allow_partial_checkpoint=True')
    lines = [
        f'{source} does not fit the model: the checkpoint looks like '
        f'{format_description(theirs)}, the config builds '
        f'{format_description(ours)}.'
    ]
    for k, c, m in mismatched[:3]:
        lines.append(f'  {k}: checkpoint {tuple(c)} vs model {tuple(m)}')
    if len(mismatched) > 3:
        lines.append(f'  ... {len(mismatched)} shape mismatches in all')
    if missing:
        lines.append(f'  {len(missing)} model keys missing from the '
                     f'checkpoint, e.g. {missing[0]}')
    lines.append('Use the config of the checkpoint\'s variant, or set '
                 'model.allow_partial_checkpoint=True for a deliberate '
                 'partial load (mismatching keys then keep their init).')
    raise CheckpointMismatchError('\n'.join(lines))


def _guard_hook(module, state_dict, prefix, local_metadata, strict,
                missing_keys, unexpected_keys, error_msgs):
    if not getattr(module, '_checkpoint_guard_enabled', True):
        return
    model_shapes = tensor_shapes(module.state_dict())
    ckpt_shapes = tensor_shapes(state_dict, prefix)
    nested = [
        k for k, v in state_dict.items()
        if k.startswith(prefix) and isinstance(v, dict)
    ]
    source = 'the checkpoint'
    if nested:
        source += f' (nested dicts under {nested})'
    check_state_dict(model_shapes, ckpt_shapes, source)


def install_checkpoint_guard(model: torch.nn.Module,
                             enabled: bool = True) -> None:
    """Register the guard on ``model`` (idempotent); ``enabled=False``
    keeps MMEngine's permissive loading (the opt-out)."""
    model._checkpoint_guard_enabled = enabled
    if not getattr(model, '_checkpoint_guard_installed', False):
        model._register_load_state_dict_pre_hook(_guard_hook, with_module=True)
        model._checkpoint_guard_installed = True
