"""D-FINE's two-stage schedule: strong augmentation and multi-scale stop at
``stop_epoch``.

Official behaviour (``Compose`` policy ``stop_epoch`` + ``BatchImageCollate
Function`` + ``DetSolver.fit``):

* from epoch ``stop_epoch`` on (0-based, ``epoch >= stop_epoch``) the
  transforms ``RandomPhotometricDistort``, ``RandomZoomOut`` and
  ``RandomIoUCrop`` are skipped, the rest of the pipeline is unchanged;
* the batch multi-scale resize is off for ``epoch >= stop_epoch``;
* at ``epoch == stop_epoch`` the solver reloads the best stage-1 checkpoint
  (model, EMA, optimizer) before training on (the epoch counter continues).

:class:`DFINEStopAugHook` does the same in MMEngine:

* in ``before_train_epoch`` with ``runner.epoch >= stop_epoch`` it removes
  from the training dataset's pipeline every transform whose class name is in
  ``policy_ops`` (defaults: this plugin's ``RandomPhotometricDistort``,
  MMDetection's ``Expand`` used as the zoom-out, and ``RandomIoUCrop``) - the
  official "skip these ops" policy, so no second pipeline has to be written in
  the config - and sets ``enabled = False`` on every
  :class:`~dfine_mmdet.models.data_preprocessors.DFINEBatchMultiScaleResize`
  in ``model.data_preprocessor.batch_augments``.  As in MMDetection's
  ``PipelineSwitchHook``, a dataloader with persistent workers is restarted so
  the workers see the new pipeline.  The switch is re-applied after a resume
  past the stop epoch (the hook keeps no state that needs saving).
* with ``reload_best_stage1=True`` it also loads, when the run *enters* epoch
  ``stop_epoch``, the best checkpoint recorded by MMEngine's
  ``CheckpointHook(save_best=...)`` (``message_hub`` key ``best_ckpt``):
  raw model weights, EMA weights and optimizer state; epoch/iteration counters
  and LR schedulers are left as they are.  Without a recorded best
  checkpoint it logs a warning and continues.  (MMEngine checkpoints store
  the EMA weights under ``state_dict`` and the raw weights under
  ``ema_state_dict['module.*']``; this hook undoes that swap.)
  The official stage-2 "reload best_stg1 after every epoch that does not
  improve" loop is not implemented.
"""
import logging
from typing import Sequence

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import _load_checkpoint

DEFAULT_POLICY_OPS = ('RandomPhotometricDistort', 'Expand', 'RandomZoomOut',
                      'RandomIoUCrop')


def _innermost_dataset(dataset):
    """Follow ``.dataset`` of dataset wrappers down to one with a pipeline."""
    while not hasattr(dataset, 'pipeline') and hasattr(dataset, 'dataset'):
        dataset = dataset.dataset
    return dataset


@HOOKS.register_module()
class DFINEStopAugHook(Hook):
    """Stop strong augmentation and batch multi-scale at ``stop_epoch``.

    Args:
        stop_epoch (int): First (0-based) epoch trained without strong augs.
        policy_ops (Sequence[str]): Class names of the transforms to drop.
        stop_batch_multiscale (bool): Disable ``DFINEBatchMultiScaleResize``
            batch augments as well. Defaults to True.
        reload_best_stage1 (bool): Reload the best stage-1 checkpoint when
            entering ``stop_epoch``. Defaults to False.
    """

    priority = 'NORMAL'

    def __init__(self,
                 stop_epoch: int,
                 policy_ops: Sequence[str] = DEFAULT_POLICY_OPS,
                 stop_batch_multiscale: bool = True,
                 reload_best_stage1: bool = False) -> None:
        if stop_epoch < 0:
            raise ValueError(f'DFINEStopAugHook: stop_epoch must be >= 0, '
                             f'got {stop_epoch}')
        self.stop_epoch = stop_epoch
        self.policy_ops = tuple(policy_ops)
        self.stop_batch_multiscale = stop_batch_multiscale
        self.reload_best_stage1 = reload_best_stage1
        self._switched = False
        self._restart_dataloader = False

    # -- helpers ---------------------------------------------------------
    def _drop_strong_augs(self, runner) -> list:
        loader = runner.train_dataloader
        dataset = _innermost_dataset(loader.dataset)
        pipeline = getattr(dataset, 'pipeline', None)
        transforms = getattr(pipeline, 'transforms', None)
        if transforms is None:
            raise TypeError(
                'DFINEStopAugHook: the training dataset '
                f'{type(dataset).__name__} has no pipeline.transforms list')
        dropped = [
            type(t).__name__ for t in transforms
            if type(t).__name__ in self.policy_ops
        ]
        transforms[:] = [
            t for t in transforms if type(t).__name__ not in self.policy_ops
        ]
        if getattr(loader, 'persistent_workers', False):
            # workers hold a copy of the dataset: force a restart
            loader._DataLoader__initialized = False
            loader._iterator = None
            self._restart_dataloader = True
        return dropped

    def _stop_multiscale(self, runner) -> int:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        preprocessor = getattr(model, 'data_preprocessor', None)
        augments = getattr(preprocessor, 'batch_augments', None) or []
        n = 0
        for aug in augments:
            if hasattr(aug, 'enabled') and hasattr(aug, 'scales'):
                aug.enabled = False
                n += 1
        return n

    def _reload_best(self, runner) -> None:
        path = runner.message_hub.get_info('best_ckpt', None)
        if path is None:
            print_log(
                'DFINEStopAugHook: reload_best_stage1=True but no best '
                'checkpoint was recorded (CheckpointHook needs save_best=...);'
                ' continuing with the current weights', 'current',
                logging.WARNING)
            return
        ckpt = _load_checkpoint(path, map_location='cpu')
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state = dict(ckpt['state_dict'])
        ema_hook = next(
            (h for h in runner.hooks if type(h).__name__ == 'EMAHook'), None)
        ema_state = ckpt.get('ema_state_dict')
        if ema_state is not None:
            # undo EMAHook's swap: state_dict holds EMA weights, and
            # ema_state_dict['module.k'] the raw weights
            raw = {
                k[7:]: v
                for k, v in ema_state.items() if k.startswith('module.')
            }
            ema_avg = {'module.' + k: state[k] for k in raw if k in state}
            ema_avg.update({
                k: v
                for k, v in ema_state.items() if not k.startswith('module.')
            })
            model.load_state_dict({**state, **raw}, strict=False)
            if ema_hook is not None:
                ema_hook.ema_model.load_state_dict(ema_avg, strict=False)
        else:
            model.load_state_dict(state, strict=False)
        if 'optimizer' in ckpt:
            runner.optim_wrapper.load_state_dict(ckpt['optimizer'])
        print_log(
            f'DFINEStopAugHook: reloaded model, EMA and optimizer from the '
            f'best stage-1 checkpoint {path} at epoch {runner.epoch}',
            'current')

    # -- hook API --------------------------------------------------------
    def before_train_epoch(self, runner) -> None:
        if runner.epoch < self.stop_epoch:
            return
        if self._switched:
            if self._restart_dataloader:
                runner.train_dataloader._DataLoader__initialized = True
                self._restart_dataloader = False
            return
        if self.reload_best_stage1 and runner.epoch == self.stop_epoch:
            self._reload_best(runner)
        dropped = self._drop_strong_augs(runner)
        n_ms = self._stop_multiscale(runner) \
            if self.stop_batch_multiscale else 0
        self._switched = True
        print_log(
            f'DFINEStopAugHook: epoch {runner.epoch} >= stop_epoch '
            f'{self.stop_epoch}: removed {dropped or "no"} transforms, '
            f'disabled {n_ms} batch multi-scale augment(s)', 'current')
