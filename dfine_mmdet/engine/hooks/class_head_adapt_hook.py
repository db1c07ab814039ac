"""Fine-tuning onto a different class set: adapt the class-dependent weights
on load.

Official behaviour (``BaseSolver.load_tuning_state``, ``-t ckpt``): load the
checkpoint's EMA weights, keep every key whose shape matches, drop
``denoising_class_embed`` when its shape differs, and map the class rows of
``enc_score_head`` / ``dec_score_head.*`` between Objects365 (366 rows) and
COCO (80 rows) with a fixed id list; other mismatching keys are skipped
silently.

In MMEngine, ``load_from=ckpt`` loads ``checkpoint['state_dict']`` (the EMA
weights for checkpoints written with ``EMAHook``) with ``strict=False``; a
shape mismatch only produces a generic warning and leaves the parameter at
its initial value.  :class:`ClassHeadAdaptHook` makes this explicit and safe:
in ``after_load_checkpoint`` (which runs before the weights are copied into
the model and before ``EMAHook`` copies them into the EMA) it

* finds every key whose shape differs from the model's;
* if the key is **class-dependent** (matches one of ``class_keys``: the
  decoder/encoder class branches and the denoising label embedding) and a
  ``class_map`` is given, builds the new tensor by picking the mapped rows of
  the checkpoint (rows mapped to ``-1`` keep the model's freshly initialised
  rows; the denoising embedding's padding row maps to the checkpoint's);
* otherwise, if it is class-dependent, removes it from the checkpoint so the
  model keeps its freshly initialised (official-init) weights;
* raises a ``ValueError`` naming the key and both shapes for a mismatching
  key that is *not* class-dependent (a wrong architecture, not a class
  change);

and logs one line listing what was re-initialised or remapped.  Resuming
(``resume=True``) is left untouched.

Config (see ``configs/dfine/custom/``)::

    load_from = 'work_dirs/dfine_s_coco_converted.pth'
    custom_hooks = [..., dict(type='ClassHeadAdaptHook')]
    # Objects365 (366 rows) -> COCO (80), the official mapping:
    # dict(type='ClassHeadAdaptHook', class_map='obj365_to_coco')
"""
import logging
import re
from typing import List, Optional, Sequence, Union

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

#: official ``obj365_ids`` (src/solver/_solver.py): COCO class i <- Objects365
#: category id OBJ365_IDS[i] + 1 (row of the 366-way head)
OBJ365_IDS = (0, 46, 5, 58, 114, 55, 116, 65, 21, 40, 176, 127, 249, 24, 56,
              139, 92, 78, 99, 96, 144, 295, 178, 180, 38, 39, 13, 43, 120,
              219, 148, 173, 165, 154, 137, 113, 145, 146, 204, 8, 35, 10, 88,
              84, 93, 26, 112, 82, 265, 104, 141, 152, 234, 143, 150, 97, 2,
              50, 25, 75, 98, 153, 37, 73, 115, 132, 106, 61, 163, 134, 277,
              81, 133, 18, 94, 30, 169, 70, 328, 226)

NAMED_CLASS_MAPS = {'obj365_to_coco': tuple(i + 1 for i in OBJ365_IDS)}

DEFAULT_CLASS_KEYS = (r'^bbox_head\.cls_branches\.\d+\.(weight|bias)$',
                      r'^bbox_head\.enc_cls_branch\.(weight|bias)$',
                      r'^dn_query_generator\.label_embedding\.weight$')


@HOOKS.register_module()
class ClassHeadAdaptHook(Hook):
    """Re-initialise or remap class-dependent weights of a loaded checkpoint.

    Args:
        class_keys (Sequence[str]): Regexes (``re.search``) of class-dependent
            state-dict keys, whose first dimension is the class dimension
            (``C`` rows, or ``C + 1`` with a final padding row for the
            denoising label embedding).
        class_map (Sequence[int] | str, optional): For each new class the
            checkpoint row to copy (``-1`` = keep the new initialisation), or
            a name from :data:`NAMED_CLASS_MAPS`. ``None`` re-initialises the
            mismatching class-dependent weights.
    """

    priority = 'VERY_HIGH'  # before EMAHook copies the weights into the EMA

    def __init__(
            self,
            class_keys: Sequence[str] = DEFAULT_CLASS_KEYS,
            class_map: Optional[Union[Sequence[int], str]] = None) -> None:
        self.class_keys = [re.compile(k) for k in class_keys]
        if isinstance(class_map, str):
            if class_map not in NAMED_CLASS_MAPS:
                raise KeyError(f'ClassHeadAdaptHook: unknown class_map '
                               f'{class_map!r}; known: '
                               f'{sorted(NAMED_CLASS_MAPS)}')
            class_map = NAMED_CLASS_MAPS[class_map]
        self.class_map = list(class_map) if class_map is not None else None

    def is_class_key(self, key: str) -> bool:
        return any(p.search(key) for p in self.class_keys)

    def _remap(self, key: str, src: torch.Tensor,
               dst: torch.Tensor) -> Optional[torch.Tensor]:
        """Rows of ``src`` picked by ``class_map`` on top of ``dst``."""
        n_new, n_old = dst.shape[0], src.shape[0]
        padded = n_new == len(self.class_map) + 1
        if n_new != len(self.class_map) and not padded:
            return None
        if src.shape[1:] != dst.shape[1:]:
            return None
        out = dst.clone()
        for new_row, old_row in enumerate(self.class_map):
            if old_row < 0:
                continue
            if old_row >= n_old - (1 if padded else 0):
                raise ValueError(
                    f'ClassHeadAdaptHook: class_map[{new_row}]={old_row} is '
                    f'out of range for checkpoint key {key!r} with {n_old} '
                    'rows')
            out[new_row] = src[old_row]
        if padded:  # denoising padding row
            out[-1] = src[-1]
        return out

    def adapt(self, state_dict: dict, model_state: dict) -> dict:
        """Adapt ``state_dict`` in place to ``model_state``; returns a report
        ``dict(reinitialised=[...], remapped=[...])``."""
        reinit: List[str] = []
        remapped: List[str] = []
        for key in list(state_dict):
            if key not in model_state:
                continue
            src, dst = state_dict[key], model_state[key]
            if src.shape == dst.shape:
                continue
            if not self.is_class_key(key):
                raise ValueError(
                    f'ClassHeadAdaptHook: checkpoint key {key!r} has shape '
                    f'{tuple(src.shape)} but the model expects '
                    f'{tuple(dst.shape)}; only class-dependent keys '
                    f'({[p.pattern for p in self.class_keys]}) may differ - '
                    'is the config the same model size as the checkpoint?')
            new = self._remap(key, src, dst) if self.class_map else None
            if new is None:
                del state_dict[key]
                reinit.append(key)
            else:
                state_dict[key] = new
                remapped.append(key)
        return dict(reinitialised=reinit, remapped=remapped)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if getattr(runner, '_resume', False):
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state = checkpoint.get('state_dict', checkpoint)
        # the runner strips a leading 'module.' later; do the same here
        if any(k.startswith('module.') for k in state):
            for k in [k for k in state if k.startswith('module.')]:
                state[k[7:]] = state.pop(k)
        report = self.adapt(state, model.state_dict())
        if report['reinitialised'] or report['remapped']:
            print_log(
                'ClassHeadAdaptHook: class count differs from the checkpoint;'
                f' re-initialised {report["reinitialised"]}, remapped '
                f'{report["remapped"]} (all other weights loaded)', 'current',
                logging.WARNING)
        else:
            print_log(
                'ClassHeadAdaptHook: all checkpoint shapes match the '
                'model; nothing to adapt', 'current')
