"""Report (or stop on) non-finite loss terms, by name and iteration.

Works with :class:`~dfine_mmdet.engine.optimizers.NonFiniteGuardOptimWrapper`,
which skips the optimizer step of a non-finite loss before any weight
changes. After each training iteration this hook reads the iteration's
``log_vars`` (every loss term by name) and the wrapper's skip flag and,
when a term is NaN / inf or the wrapper skipped the step:

* ``action='skip'`` (default): logs one warning line with the iteration and
  the term names; at the end of each epoch logs how many steps were skipped
  in it;
* ``action='stop'``: raises ``FloatingPointError`` naming the iteration and
  the terms (the weights are still those before the bad step when the
  guard wrapper is used).

Without the guard wrapper the hook still detects and names the terms, but
the optimizer has already stepped: it then always stops, since the weights
may hold NaN.

D-FINE's loss (like the official criterion, kept for parity) passes every
term through ``nan_to_num``, so a NaN term is logged as 0 and the failure
surfaces as non-finite *gradients*: the message then names that cause
(``non-finite gradients (finite loss)``) instead of a term. Heads that do not
zero NaN terms get the term names.
"""
import math
from typing import Dict, Optional

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """See the module docstring.

    Args:
        action (str): ``'skip'`` or ``'stop'``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'skip'):
        if action not in ('skip', 'stop'):
            raise ValueError(
                f"NonFiniteLossHook.action must be 'skip' or 'stop', got "
                f'{action!r}')
        self.action = action
        self.epoch_skipped = 0
        self.total_skipped = 0

    @staticmethod
    def _guard(runner):
        wrapper = runner.optim_wrapper
        return wrapper if hasattr(wrapper, 'last_skipped') else None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[Dict] = None) -> None:
        bad = {}
        for name, value in (outputs or {}).items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = float(value.detach())
            if isinstance(value, (int, float)) and not math.isfinite(value):
                bad[name] = value
        guard = self._guard(runner)
        skipped = guard is not None and guard.last_skipped
        if guard is None and not bad:
            # no guard: NaN may have reached the weights through the step
            model = runner.model.module if hasattr(runner.model,
                                                   'module') else runner.model
            for name, param in model.named_parameters():
                if not bool(torch.isfinite(param).all()):
                    bad['weights'] = f'non-finite {name}'
                    break
        if not bad and not skipped:
            return
        what = ('loss terms ' +
                ', '.join(f'{k}={v}' for k, v in sorted(bad.items(), key=str))
                ) if bad else (guard.last_skip_reason)
        where = f'iteration {runner.iter + 1} (epoch {runner.epoch + 1})'
        if guard is None:
            raise FloatingPointError(
                f'non-finite {what} at {where}. The optimizer already '
                'stepped (weights may be NaN); set optim_wrapper.type='
                "'NonFiniteGuardOptimWrapper' to skip such steps")
        if self.action == 'stop':
            raise FloatingPointError(
                f'non-finite {what} at {where}; the step was skipped and '
                "training stops (NonFiniteLossHook action='stop')")
        self.epoch_skipped += 1
        self.total_skipped += 1
        print_log(
            f'non-finite {what} at {where}: step skipped '
            f'({self.total_skipped} so far)',
            logger='current',
            level=30)

    def after_train_epoch(self, runner) -> None:
        if self.epoch_skipped:
            print_log(
                f'epoch {runner.epoch + 1}: {self.epoch_skipped} optimizer '
                'step(s) skipped for non-finite losses',
                logger='current',
                level=30)
        self.epoch_skipped = 0
