"""DEIM's Dense O2O epoch policy: which augmentations run in which epochs.

DEIM (Huang et al., CVPR 2025, https://github.com/ShihuaHuang95/DEIM,
``engine/data/transforms/container.py`` policy ``stop_epoch`` with three
epochs, and ``BatchImageCollateFunction``) trains in four stages set by
``policy_epochs = [e0, e1, e2]`` (DEIM-D-FINE-L: ``[4, 29, 50]``), 0-based:

===================  =====================================================
epoch                data
===================  =====================================================
``< e0``             no strong augmentation: the policy ops (Mosaic,
                     photometric distortion, zoom-out, IoU crop) are off
``[e0, e1)``         Dense O2O: each sample goes through Mosaic with
                     probability ``mosaic_prob`` (then no zoom-out / IoU
                     crop) or else through the D-FINE augmentations;
                     batch MixUp in ``mixup_epochs`` (default ``[e0, e1)``)
``[e1, e2)``         the D-FINE augmentations, no Mosaic, no MixUp
``>= e2``            no strong augmentation, no batch multi-scale resize
===================  =====================================================

:class:`DenseO2OPolicyHook` applies this in MMEngine.  Before each training
epoch it computes the stage; when it differs from the stage applied so far it

* rebuilds the training pipeline's transform list from the one the config
  built, without the transforms of the stage (by class name: ``policy_ops``
  off in stages 0 and 3; ``mosaic_ops`` off in stage 2);
* sets ``enabled`` on every
  :class:`~dfine_mmdet.models.data_preprocessors.DEIMBatchMixUp` (in
  ``mixup_epochs``) and every
  :class:`~dfine_mmdet.models.data_preprocessors.DFINEBatchMultiScaleResize`
  (before ``e2``) of ``model.data_preprocessor.batch_augments``;
* restarts a dataloader with persistent workers, so the workers see the new
  pipeline (as MMDetection's ``PipelineSwitchHook`` does).

The stage is recomputed from ``runner.epoch``, so a resumed run gets the
right pipeline.  With ``reload_best_stage1=True`` it reloads the best
checkpoint when the run enters ``e2``, as DEIM (and D-FINE) do; that part is
:class:`~dfine_mmdet.engine.hooks.DFINEStopAugHook`'s and is inherited.
Use it in place of D-FINE's ``stop_aug`` hook::

    default_hooks = dict(stop_aug=dict(
        _delete_=True, type='DenseO2OPolicyHook',
        policy_epochs=(4, 29, 50), reload_best_stage1=True))
"""
from typing import Optional, Sequence

from mmdet.registry import HOOKS
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from .dfine_stop_aug_hook import DFINEStopAugHook, _innermost_dataset

#: transforms switched by the policy (DEIM's ``policy.ops``; ``Expand`` is
#: the D-FINE configs' zoom-out, ``SkipAfterMosaic`` wraps zoom-out and crop)
DENSE_O2O_POLICY_OPS = ('DEIMMosaic', 'RandomPhotometricDistort', 'Expand',
                        'RandomZoomOut', 'RandomIoUCrop', 'SkipAfterMosaic')
MOSAIC_OPS = ('DEIMMosaic', )


@HOOKS.register_module()
class DenseO2OPolicyHook(DFINEStopAugHook):
    """DEIM's four-stage augmentation policy (see the module docstring).

    Args:
        policy_epochs (Sequence[int]): ``(e0, e1, e2)``, non-decreasing.
        mixup_epochs (Sequence[int], optional): ``[start, stop)`` of the
            batch MixUp. Default ``(e0, e1)``.
        policy_ops (Sequence[str]): Class names off in stages 0 and 3.
        mosaic_ops (Sequence[str]): Class names on only in stage 1.
        stop_batch_multiscale (bool): Turn ``DFINEBatchMultiScaleResize``
            off from ``e2`` on. Default True.
        reload_best_stage1 (bool): Reload the best checkpoint when entering
            ``e2``. Default False.
    """

    def __init__(self,
                 policy_epochs: Sequence[int],
                 mixup_epochs: Optional[Sequence[int]] = None,
                 policy_ops: Sequence[str] = DENSE_O2O_POLICY_OPS,
                 mosaic_ops: Sequence[str] = MOSAIC_OPS,
                 stop_batch_multiscale: bool = True,
                 reload_best_stage1: bool = False) -> None:
        epochs = [int(e) for e in policy_epochs]
        if len(epochs) != 3 or epochs != sorted(epochs) or epochs[0] < 0:
            raise ValueError('DenseO2OPolicyHook: policy_epochs must be three '
                             f'non-decreasing epochs >= 0, got '
                             f'{list(policy_epochs)}')
        super().__init__(
            stop_epoch=epochs[2],
            policy_ops=policy_ops,
            stop_batch_multiscale=stop_batch_multiscale,
            reload_best_stage1=reload_best_stage1)
        self.policy_epochs = tuple(epochs)
        mixup = epochs[:2] if mixup_epochs is None else [
            int(e) for e in mixup_epochs
        ]
        if len(mixup) != 2 or mixup[0] > mixup[1]:
            raise ValueError('DenseO2OPolicyHook: mixup_epochs must be '
                             f'[start, stop), got {list(mixup_epochs)}')
        self.mixup_epochs = tuple(mixup)
        self.mosaic_ops = tuple(mosaic_ops)
        self._stage = None
        self._full_transforms = None

    def stage(self, epoch: int) -> int:
        """Policy stage (0-3) of a 0-based epoch."""
        e0, e1, e2 = self.policy_epochs
        if epoch < e0:
            return 0
        if epoch < e1:
            return 1
        if epoch < e2:
            return 2
        return 3

    def _off(self, stage: int) -> tuple:
        if stage in (0, 3):
            return self.policy_ops
        if stage == 2:
            return self.mosaic_ops
        return ()

    def _set_pipeline(self, runner, stage: int) -> list:
        loader = runner.train_dataloader
        dataset = _innermost_dataset(loader.dataset)
        transforms = getattr(
            getattr(dataset, 'pipeline', None), 'transforms', None)
        if transforms is None:
            raise TypeError(
                'DenseO2OPolicyHook: the training dataset '
                f'{type(dataset).__name__} has no pipeline.transforms list')
        if self._full_transforms is None:
            self._full_transforms = list(transforms)
        off = self._off(stage)
        transforms[:] = [
            t for t in self._full_transforms if type(t).__name__ not in off
        ]
        if getattr(loader, 'persistent_workers', False):
            # workers hold a copy of the dataset: force a restart
            loader._DataLoader__initialized = False
            loader._iterator = None
            self._restart_dataloader = True
        return [type(t).__name__ for t in transforms]

    def _set_batch_augments(self, runner, epoch: int) -> dict:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        preprocessor = getattr(model, 'data_preprocessor', None)
        augments = getattr(preprocessor, 'batch_augments', None) or []
        state = {}
        for aug in augments:
            name = type(aug).__name__
            if name == 'DEIMBatchMixUp':
                aug.enabled = self.mixup_epochs[0] <= epoch < \
                    self.mixup_epochs[1]
            elif hasattr(aug, 'enabled') and hasattr(aug, 'scales'):
                if self.stop_batch_multiscale:
                    aug.enabled = epoch < self.stop_epoch
            else:
                continue
            state[name] = aug.enabled
        return state

    def before_train_epoch(self, runner) -> None:
        epoch = runner.epoch
        if self._restart_dataloader:
            runner.train_dataloader._DataLoader__initialized = True
            self._restart_dataloader = False
        augments = self._set_batch_augments(runner, epoch)
        stage = self.stage(epoch)
        if stage == self._stage:
            return
        if self.reload_best_stage1 and epoch == self.stop_epoch:
            self._reload_best(runner)
        kept = self._set_pipeline(runner, stage)
        self._stage = stage
        print_log(
            f'DenseO2OPolicyHook: epoch {epoch}, stage {stage} of policy '
            f'epochs {list(self.policy_epochs)}: pipeline {kept}; batch '
            f'augments {augments}', 'current')
