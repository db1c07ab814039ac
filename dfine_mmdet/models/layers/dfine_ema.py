"""D-FINE's model EMA: exponential moving average with an exponential decay
ramp.

The official recipe (``src/optim/ema.py``, ``ModelEMA``) keeps an EMA of
**every floating-point entry of the model's state_dict** (parameters *and*
buffers: BN running stats, the decoder's ``anchors``/``up``, ...) and ramps
the decay up over the first updates::

    d(u) = decay * (1 - exp(-u / warmups))   u = 1, 2, ... (number of updates)
    ema  = d(u) * ema + (1 - d(u)) * model    (floating-point entries only)

with ``decay=0.9999`` and ``warmups=1000`` (``warmups=0`` means a constant
``decay``, used by the Objects365->COCO fine-tuning configs).  Integer
entries (``num_batches_tracked``, the int64 ``reg_scale``) are never averaged
and keep the value they had when the EMA copy was made.

MMEngine's :class:`~mmengine.model.ExponentialMovingAverage` is not exact for
this: its decay is fixed (no ramp), it uses ``lerp_`` and its first update
*copies* the model instead of averaging.  This class keeps MMEngine's
:class:`~mmengine.model.BaseAveragedModel` machinery (so it plugs into
:class:`mmengine.hooks.EMAHook`, which swaps the EMA weights in for
validation/testing and stores them in checkpoints) and overrides the update
so that update number ``u = steps + 1`` uses ``d(u)`` exactly as the official
code does, from the very first update on.

Use it with (the training configs declare it by name in ``default_hooks``)::

    default_hooks = dict(ema=dict(type='EMAHook', ema_type='DFINEModelEMA',
                                  decay=0.9999, warmups=1000,
                                  update_buffers=True, priority=49))

Note: MMEngine's ``EMAHook`` copies the model in ``before_run``, i.e. before
``Runner._init_model_weights()``; the official copies after weight init.  The
copied initial weights enter the average with weight ``prod_u d(u)``
(``d(1)*d(2) ~ 2e-6`` after two updates), so this difference vanishes after
the first couple of iterations.
"""
import math

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseAveragedModel
from torch import Tensor, nn


def dfine_ema_decay(updates: int,
                    decay: float = 0.9999,
                    warmups: int = 1000) -> float:
    """The official EMA decay ramp ``d(u) = decay * (1 - exp(-u / warmups))``.

    Args:
        updates (int): Update number ``u`` (1 for the first update).
        decay (float): Asymptotic decay. Defaults to 0.9999.
        warmups (int): Ramp length in updates; 0 disables the ramp (constant
            ``decay``). Defaults to 1000.

    Returns:
        float: The decay used for update ``u`` (a Python float, computed in
        double precision like the official ``math.exp`` lambda).
    """
    if warmups == 0:
        return decay
    return decay * (1 - math.exp(-updates / warmups))


@MODELS.register_module()
class DFINEModelEMA(BaseAveragedModel):
    """EMA of a detector with D-FINE's decay ramp, over params and buffers.

    Args:
        model (nn.Module): The model to average (deep-copied).
        decay (float): Asymptotic EMA decay. Defaults to 0.9999.
        warmups (int): Length of the exponential decay ramp in updates; 0 gives
            a constant decay. Defaults to 1000.
        interval (int): Update every ``interval`` calls. The official updates
            every iteration. Defaults to 1.
        device (torch.device, optional): Where to keep the averaged copy.
        update_buffers (bool): Average buffers too. The official does;
            keep it True. Defaults to True.
    """

    def __init__(self,
                 model: nn.Module,
                 decay: float = 0.9999,
                 warmups: int = 1000,
                 interval: int = 1,
                 device=None,
                 update_buffers: bool = True) -> None:
        super().__init__(model, interval, device, update_buffers)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f'DFINEModelEMA: decay must be in [0, 1), '
                             f'got {decay}')
        if warmups < 0:
            raise ValueError(f'DFINEModelEMA: warmups must be >= 0, '
                             f'got {warmups}')
        self.decay = decay
        self.warmups = warmups

    def avg_func(self, averaged_param: Tensor, source_param: Tensor,
                 steps: int) -> None:
        """In-place ``ema = d*ema + (1-d)*src`` for update ``u``.

        ``steps`` counts ``update_parameters`` calls made before this one, so
        the update number is ``u = steps // interval + 1``.  The two-step form
        (``mul_`` then ``add_`` of ``(1-d)*src``) is the official arithmetic,
        so results match it bit for bit.
        """
        updates = int(steps) // self.interval + 1
        d = dfine_ema_decay(updates, self.decay, self.warmups)
        averaged_param.mul_(d)
        averaged_param.add_((1 - d) * source_param)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """Average the model into the EMA copy (every ``interval`` calls).

        Unlike :meth:`BaseAveragedModel.update_parameters`, the first update
        averages (official behaviour) instead of copying the model.

        Args:
            model (nn.Module): The trained (source) model, unwrapped.
        """
        src = (
            model.state_dict()
            if self.update_buffers else dict(model.named_parameters()))
        steps = int(self.steps)
        if steps % self.interval == 0:
            for k, p_avg in self.avg_parameters.items():
                if p_avg.dtype.is_floating_point:
                    self.avg_func(p_avg.data, src[k].data.to(p_avg.device),
                                  steps)
        if not self.update_buffers:
            for b_avg, b_src in zip(self.module.buffers(), model.buffers()):
                b_avg.data.copy_(b_src.data.to(b_avg.device))
        self.steps += 1

    def extra_repr(self) -> str:
        return f'decay={self.decay}, warmups={self.warmups}'
