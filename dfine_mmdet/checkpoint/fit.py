"""Does a state dict fit a model? One comparison, one report.

:func:`state_dict_fit` compares the key -> shape maps of a checkpoint and of
a model and returns a :class:`StateDictFit` (shape mismatches, keys missing
from the checkpoint, unexpected keys). The load guard (:mod:`.guard`) and the
official converter (:mod:`.official`) both use it; :meth:`StateDictFit.report`
is the text both print.
"""
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch

Shape = Tuple[int, ...]


class StateDictFit(NamedTuple):
    """Differences between a checkpoint and a model (keys without prefix).

    ``mismatched``: ``(key, checkpoint shape, model shape)`` in checkpoint
    order;
    ``missing``: model keys the checkpoint lacks; ``unexpected``: checkpoint
    keys the model lacks.
    """
    mismatched: List[Tuple[str, Shape, Shape]]
    missing: List[str]
    unexpected: List[str]

    @property
    def fits(self) -> bool:
        """True when keys and shapes are the same on both sides."""
        return not (self.mismatched or self.missing or self.unexpected)

    def report(self, max_items: int = 5) -> Optional[str]:
        """The first differences, one line per kind; None when it fits."""
        lines = []
        if self.mismatched:
            lines.append(
                f'{len(self.mismatched)} shape mismatch(es), first: ' +
                '; '.join(f'{k}: checkpoint {c} vs model {m}'
                          for k, c, m in self.mismatched[:max_items]))
        if self.missing:
            lines.append(f'{len(self.missing)} key(s) missing from the '
                         'checkpoint, first: ' +
                         ', '.join(self.missing[:max_items]))
        if self.unexpected:
            lines.append(f'{len(self.unexpected)} unexpected key(s) in the '
                         'checkpoint, first: ' +
                         ', '.join(self.unexpected[:max_items]))
        return '\n'.join(lines) if lines else None


def tensor_shapes(state_dict: Mapping[str, object],
                  prefix: str = '') -> Dict[str, Shape]:
    """``key -> shape`` of the tensors under ``prefix`` (prefix removed);
    non-tensor entries are left out."""
    return {
        k[len(prefix):]: tuple(v.shape)
        for k, v in state_dict.items()
        if k.startswith(prefix) and isinstance(v, torch.Tensor)
    }


def state_dict_fit(model_shapes: Mapping[str, Shape],
                   ckpt_shapes: Mapping[str, Shape]) -> StateDictFit:
    """Compare a checkpoint's ``key -> shape`` with a model's."""
    return StateDictFit(
        mismatched=[(k, tuple(s), tuple(model_shapes[k]))
                    for k, s in ckpt_shapes.items()
                    if k in model_shapes and tuple(model_shapes[k]) != tuple(s)
                    ],
        missing=[k for k in model_shapes if k not in ckpt_shapes],
        unexpected=[k for k in ckpt_shapes if k not in model_shapes])
