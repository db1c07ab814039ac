"""RNGStateHook: save the random-number generators in every checkpoint and
restore them on ``--resume``, so a resumed run continues the random stream
of the interrupted one.

MMEngine checkpoints hold model, optimizer, schedulers, message hub and
(with ``EMAHook``) the EMA, but not the RNG states: a resumed run reseeds
from ``randomness.seed`` and then draws different denoising noise
(``torch``), augmentation parameters (``numpy`` / ``random`` in a
``num_workers=0`` loader) than the uninterrupted run would have. With this
hook (and a fixed seed, a deterministic loader - the sampler is already
seeded per epoch by MMEngine - and no validation between the checkpoint
and the next epoch, since creating a dataloader iterator draws from the
torch generator) the resumed run ends with bit-identical weights on CPU.

``before_save_checkpoint`` stores ``checkpoint['rng_state'] = {'torch':
..., 'numpy': ..., 'python': ..., 'cuda': ...}``; ``after_load_checkpoint``
restores them when present (only on resume: a ``load_from`` fine-tune keeps
its own seed). Dataloader workers reseed themselves from the torch
generator per epoch, so they follow. Enable with ``custom_hooks =
[dict(type='RNGStateHook')]``.
"""
import random

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log


@HOOKS.register_module()
class RNGStateHook(Hook):
    """See the module docstring."""

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(
            torch=torch.get_rng_state(),
            numpy=np.random.get_state(),
            python=random.getstate())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if state is None or not runner._resume:
            return
        torch.set_rng_state(state['torch'])
        np.random.set_state(state['numpy'])
        random.setstate(state['python'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
        print_log(
            'RNGStateHook: restored the torch/numpy/python random '
            'states of the checkpoint',
            logger='current')
