"""An MMEngine hook that ends training when a wall-clock budget is spent.

Equal-budget comparisons (``tools/benchmark/compare.py --toy-minutes``) give
every model the same seconds of training instead of the same number of
iterations: a model whose step is 10x slower gets 10x fewer iterations, which
is the trade a user with a fixed compute budget faces. The clock starts at
``before_train`` (model built, weights initialised; data loading of the first
batch is counted), and after every iteration whose end is past the budget the
hook sets ``runner.train_loop.stop_training``, which MMEngine's
``IterBasedTrainLoop`` and ``EpochBasedTrainLoop`` check before the next
iteration (the epoch loop only between epochs, so use the iteration loop).
Training therefore always runs at least one iteration and overruns the budget
by at most one step.
"""
import time

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class WallClockBudgetHook(Hook):
    """Stop training after ``budget_s`` seconds; count the iterations done.

    Args:
        budget_s (float): seconds of training (> 0).

    Attributes after training: ``iters`` (iterations run), ``train_s``
    (seconds from ``before_train`` to the end of the last iteration).
    In a config: ``custom_hooks = [dict(type='WallClockBudgetHook',
    budget_s=300)]``.
    """
    # after the optimizer / logger hooks of the same iteration
    priority = 'LOWEST'

    def __init__(self, budget_s: float):
        if budget_s <= 0:
            raise ValueError(f'budget_s must be > 0, got {budget_s}')
        self.budget_s = float(budget_s)
        self.iters = 0
        self.train_s = 0.0
        self._start = None

    def before_train(self, runner) -> None:
        self._start = time.perf_counter()
        self.iters = 0

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self.iters += 1
        self.train_s = time.perf_counter() - self._start
        if self.train_s >= self.budget_s:
            runner.train_loop.stop_training = True

    def after_train(self, runner) -> None:
        runner.logger.warning(
            f'wall-clock budget {self.budget_s:.0f} s: trained '
            f'{self.iters} iterations in {self.train_s:.1f} s')
