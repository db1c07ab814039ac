"""Short training runs on the toy set (:mod:`.toy_data`) for the learning
benchmarks in ``tools/experiments/`` (``toy_train.py``, ``dino_fdr_toy.py``).

:func:`build_cfg` turns a toy config into an iteration-based run in a work
dir, on a toy set, with a seed; :class:`IterationRecorder` records the total
loss and the wall time of every iteration.
"""
import os.path as osp
import time
from typing import Any, List, Optional

from mmengine.hooks import Hook

from .toy_data import ensure_toy_dataset

__all__ = ['IterationRecorder', 'build_cfg', 'ensure_toy_data']


def ensure_toy_data(data_dir: str, seed: int = 0) -> str:
    """``data_dir``, with the default toy set written there when absent."""
    return ensure_toy_dataset(data_dir, seed)


def build_cfg(args: Any, data_dir: str, work_dir: str):
    """The run config of a toy training.

    Args:
        args: an object with ``config`` (path), ``cfg_options`` (dict of
            overrides, as ``--cfg-options``), ``iters`` (iterations, or None
            for a loop that only a budget hook ends) and ``seed``.
        data_dir (str): the toy set (train / val images and annotations).
        work_dir (str): the run's work dir.

    Returns:
        Config: ``IterBasedTrainLoop`` of ``args.iters`` iterations, no
        validation or checkpoint during training, quiet logging, the toy
        set's data roots and annotation files, one visualizer per work dir.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options or {})
    root = data_dir.rstrip('/') + '/'
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        loader.dataset.data_root = root
    val_ann = root + 'annotations/instances_val.json'
    cfg.val_evaluator.ann_file = val_ann
    cfg.test_evaluator.ann_file = val_ann
    max_iters = args.iters if args.iters is not None else 10**9
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10**9)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=10**9, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10**9)
    cfg.log_processor = dict(by_epoch=False)
    cfg.work_dir = work_dir
    # MMDetection's runtime names its visualizer 'visualizer', and MMEngine
    # reuses an existing instance of that name: a second Runner in the same
    # process (dino_fdr_toy.py trains several; tests run these in-process)
    # would write into the first one's work dir, which may be gone.  One
    # name per work dir gives each run its own visualizer.
    cfg.visualizer.name = f'visualizer:{osp.abspath(work_dir)}'
    cfg.randomness = dict(seed=args.seed)
    cfg.log_level = 'WARNING'
    return cfg


class IterationRecorder(Hook):
    """Total loss (``losses``) and wall seconds (``times``) of every
    training iteration."""
    priority = 'LOWEST'

    def __init__(self):
        self.losses: List[float] = []
        self.times: List[float] = []
        self._tic: Optional[float] = None

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._tic = time.perf_counter()

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self.times.append(time.perf_counter() - self._tic)
        loss = outputs['loss']
        self.losses.append(
            float(loss.detach() if hasattr(loss, 'detach') else loss))
