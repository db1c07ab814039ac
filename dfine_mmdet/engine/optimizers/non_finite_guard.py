"""Non-finite loss guard: never step the optimizer on a NaN / inf loss.

A NaN or inf total loss (AMP overflow, a degenerate box reaching the GIoU,
a too-high learning rate) would otherwise write NaN into every weight the
backward pass reaches, and the run then goes on silently with a dead model.

:class:`NonFiniteGuardOptimWrapper` (and the AMP variant
:class:`NonFiniteGuardAmpOptimWrapper`) check the total loss in
``update_params``. A finite loss takes the normal path. A non-finite one is
**not** back-propagated: the gradients are cleared, the step is skipped,
counted (``num_skipped``) and logged. The non-AMP wrapper also skips a step
whose gradients are non-finite although the loss is finite (otherwise AdamW's
moments, and then every weight, turn NaN). Which loss terms
were non-finite is only known after ``train_step`` returns its ``log_vars``;
:class:`~dfine_mmdet.engine.hooks.NonFiniteLossHook` reads them, logs the
term names and, with ``action='stop'``, stops training with an error naming
the iteration and the terms.

Config::

    optim_wrapper = dict(type='NonFiniteGuardOptimWrapper', ...)  # or
    optim_wrapper = dict(type='NonFiniteGuardAmpOptimWrapper', ...)
    custom_hooks = [..., dict(type='NonFiniteLossHook', action='skip')]

Everything else is MMEngine's ``OptimWrapper`` / ``AmpOptimWrapper``
unchanged (gradient clipping, accumulation, the D-FINE optimizer groups of
``DFINEOptimWrapperConstructor``).
"""
from typing import Dict, Optional

import torch
from mmdet.registry import OPTIM_WRAPPERS
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper


class _NonFiniteGuardMixin:
    """``update_params`` that skips non-finite losses (see module doc)."""

    def _init_guard(self) -> None:
        self.num_skipped = 0
        #: ``True`` when the last ``update_params`` call was skipped, and why
        self.last_skipped = False
        self.last_skip_reason = ''
        self._calls = 0

    #: also skip a step whose gradients are non-finite although the loss is
    #: finite (the AMP wrapper leaves that to its GradScaler)
    check_grads = True

    def _skip(self, what: str, zero_kwargs: Optional[Dict]) -> None:
        self.last_skipped = True
        self.last_skip_reason = what
        self.num_skipped += 1
        self.zero_grad(**(zero_kwargs or {}))
        print_log(
            f'{what} at update {self._calls}: optimizer step skipped '
            f'({self.num_skipped} skipped so far)',
            logger='current',
            level=30)

    def _grads_finite(self) -> bool:
        grads = [
            p.grad for group in self.optimizer.param_groups
            for p in group['params'] if p.grad is not None
        ]
        return all(bool(torch.isfinite(g).all()) for g in grads)

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """``OptimWrapper.update_params`` (scale, backward, step and zero
        at the accumulation boundary) with the two checks above."""
        self._calls += 1
        self.last_skipped = False
        if not bool(torch.isfinite(loss).all()):
            self._skip(
                f'non-finite total loss ({loss.detach().float().item()})',
                zero_kwargs)
            return
        self.backward(self.scale_loss(loss))
        if self.should_update():
            if self.check_grads and not self._grads_finite():
                self._skip('non-finite gradients (finite loss)', zero_kwargs)
                return
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))


@OPTIM_WRAPPERS.register_module()
class NonFiniteGuardOptimWrapper(_NonFiniteGuardMixin, OptimWrapper):
    """``OptimWrapper`` that skips steps on a NaN / inf loss (module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_guard()


@OPTIM_WRAPPERS.register_module()
class NonFiniteGuardAmpOptimWrapper(_NonFiniteGuardMixin, AmpOptimWrapper):
    """``AmpOptimWrapper`` that skips steps on a NaN / inf loss (module doc).

    The GradScaler still skips steps whose *gradients* overflow; this also
    catches a loss that is already non-finite in the forward pass."""

    check_grads = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_guard()
