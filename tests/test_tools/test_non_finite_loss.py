"""A NaN loss injected into a tiny D-FINE training run: the step is skipped
and counted (weights untouched), or training stops naming the iteration and
the loss term (docs/reliability.md)."""
import copy

import pytest
import torch
from mmdet.registry import HOOKS
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner


@HOOKS.register_module(force=True)
class _InjectNaNLossHook(Hook):
    """Test helper: for one iteration, ``bbox_head.loss_bbox`` returns its
    value times NaN (what an overflow or a degenerate box does)."""

    def __init__(self, at_iter):
        self.at_iter = at_iter
        self.module = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at_iter:
            self.module = runner.model.bbox_head.loss_bbox
            forward = type(self.module).forward.__get__(self.module)
            self.module.forward = lambda *a, **k: forward(*a, **k) * float(
                'nan')

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        if self.module is not None:
            del self.module.forward  # back to the class's forward
            self.module = None


def _runner(tiny_config,
            work_dir,
            action,
            wrapper='NonFiniteGuardOptimWrapper',
            at_iter=1):
    cfg = Config.fromfile(tiny_config)
    cfg.work_dir = str(work_dir)
    cfg.optim_wrapper.type = wrapper
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=3, val_interval=100)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.param_scheduler = []
    cfg.custom_hooks = [
        dict(type='_InjectNaNLossHook', at_iter=at_iter),
        dict(type='NonFiniteLossHook', action=action)
    ]
    return Runner.from_cfg(cfg)


class _Snapshot(Hook):

    def __init__(self):
        self.states = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.states[runner.iter] = copy.deepcopy(runner.model.state_dict())


def test_nan_step_is_skipped_and_counted(tiny_config, tmp_path, caplog):
    runner = _runner(tiny_config, tmp_path, 'skip')
    snap = _Snapshot()
    runner.register_hook(snap, priority='VERY_LOW')
    runner.train()
    assert runner.optim_wrapper.num_skipped == 1
    # iteration 1 (0-based) was skipped: weights before iter 2 == before 1
    before, after = snap.states[1], snap.states[2]
    params = dict(runner.model.named_parameters())
    trainable = [k for k, p in params.items() if p.requires_grad]
    assert trainable
    for k in trainable:
        assert torch.equal(before[k], after[k]), k
    # ... while the other iterations did update the weights
    assert any(not torch.equal(snap.states[0][k], before[k])
               for k in trainable)
    for k in trainable:
        assert torch.isfinite(params[k]).all(), k
    log = open(runner.log_dir + f'/{runner.timestamp}.log').read()
    # D-FINE's loss zeroes NaN terms (official nan_to_num); the NaN shows
    # in the gradients, and the step is skipped for that named cause
    assert ('non-finite gradients (finite loss) at iteration 2 (epoch 1): '
            'step skipped (1 so far)') in log, log[-3000:]


def test_nan_stops_training_naming_iteration_and_term(tiny_config, tmp_path):
    runner = _runner(tiny_config, tmp_path, 'stop')
    with pytest.raises(
            FloatingPointError,
            match=r'non-finite gradients \(finite loss\) at '
            r'iteration 2 .*training stops'):
        runner.train()
    assert runner.optim_wrapper.num_skipped == 1
    for name, p in runner.model.named_parameters():
        assert torch.isfinite(p).all(), name


def test_without_the_guard_wrapper_training_stops(tiny_config, tmp_path):
    runner = _runner(tiny_config, tmp_path, 'skip', wrapper='OptimWrapper')
    with pytest.raises(FloatingPointError, match='optimizer already stepped'):
        runner.train()
