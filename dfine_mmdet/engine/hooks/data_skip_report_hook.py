"""DataSkipReportHook: log every data drop at the end of each epoch, one
line per cause with its count.

The counts come from :mod:`dfine_mmdet.datasets.skip_counter`, to which
``CheckedCocoDataset``, ``CheckedLoadImageFromFile`` and
``SanitizeBoundingBoxes(log_dropped=True)`` report. ``before_run`` sets
``DFINE_DATA_SKIP_DIR`` to ``<work_dir>/data_skips`` so that dataloader
workers (started later, they inherit the environment) write their counts
there. After each train (and val) epoch the hook logs::

    data skips after epoch 2: missing image file: 3 (run total 6), ...

(or ``no data skipped``) and stores the totals in
``runner.message_hub`` (``data_skips/<cause>``) so that tests and other
hooks can read them. Enable with ``custom_hooks =
[dict(type='DataSkipReportHook')]``.
"""
import logging
import os
import os.path as osp
import shutil
from collections import Counter

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log

from dfine_mmdet.datasets.skip_counter import ENV_DIR, ENV_MAIN_PID, collect


@HOOKS.register_module()
class DataSkipReportHook(Hook):
    """See the module docstring."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._last = Counter()

    def before_run(self, runner) -> None:
        out_dir = osp.join(runner.work_dir, 'data_skips')
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir, exist_ok=True)
        os.environ[ENV_DIR] = out_dir
        os.environ[ENV_MAIN_PID] = str(os.getpid())

    def _report(self, runner, label: str) -> None:
        totals, example = collect()
        new = totals - self._last
        self._last = totals
        for cause, n in totals.items():
            runner.message_hub.update_info(f'data_skips/{cause}', n)
        if not totals or not sum(new.values()):
            print_log(
                f'data skips {label}: none ' +
                (f'new (run total {sum(totals.values())})'
                 if totals else 'so far'),
                logger='current')
            return
        lines = [
            f'{cause}: {new.get(cause, 0)} (run total {n}; e.g. '
            f'{example.get(cause, "?")})'
            for cause, n in sorted(totals.items())
        ]
        print_log(
            f'data skips {label}:\n  ' + '\n  '.join(lines),
            logger='current',
            level=logging.WARNING)

    def after_train_epoch(self, runner) -> None:
        self._report(runner, f'in train epoch {runner.epoch + 1}')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._report(runner, f'after val at epoch {runner.epoch}')

    def after_run(self, runner) -> None:
        for key in (ENV_DIR, ENV_MAIN_PID):
            os.environ.pop(key, None)
