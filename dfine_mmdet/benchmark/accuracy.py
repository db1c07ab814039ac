"""The accuracy column of ``tools/benchmark/compare.py``: COCO box AP of a
checkpoint, or toy mAP after equal wall-clock training.

Both go through MMDetection's own machinery: a ``Runner`` built from the
model's config (``Runner.from_cfg``), its test / validation loop and
``CocoMetric``; nothing downloads (``Pretrained`` ``init_cfg`` entries are
removed).

**COCO AP** (:func:`coco_config` + :func:`evaluate_checkpoint`): the config's
own ``test_dataloader`` and ``test_evaluator`` (pipeline, image size, score
thresholds unchanged), with the dataset's ``data_root`` set to ``--coco-root``
and the evaluator's ``ann_file`` to ``<coco-root>/<the dataset's ann_file>``
(for COCO configs ``annotations/instances_val2017.json`` and images in
``val2017/``); ``runner.test()`` loads the checkpoint (``load_from``). The
result also says how many of the model's tensors the checkpoint covered with
the right shape (MMEngine loads non-strictly and only warns).

**Toy mAP** (:func:`toy_config` + :func:`train_and_evaluate`): every model is
trained on the synthetic set of :mod:`.toy_data` for the same
wall-clock budget (:class:`~dfine_mmdet.engine.hooks.WallClockBudgetHook`)
from the same seed, then its raw weights are evaluated on the toy val split.
What is common to all models, replacing the config's own settings:

* data: ``CocoDataset`` on the toy set (classes read from its annotation file),
  images without objects skipped, one pipeline for all: load, resize to
  ``size x size`` (aspect not kept), random flip (train), boxes under 1 px
  dropped; batch ``batch_size``; batch augments of the data preprocessor
  removed (YOLOX's random resize, D-FINE's multi-scale);
* model: every ``num_classes`` (outside the RPN) set to the toy class count
  (:func:`.num_classes.set_num_classes`), D-FINE's ``eval_spatial_size`` set
  to the size; random initialisation (no pretrained backbone);
* schedule: ``IterBasedTrainLoop`` stopped by the budget; the config's own
  optimizer, learning rate, weight decay, parameter-wise settings and gradient
  clipping (learning rates as written, no auto-scaling; ``AmpOptimWrapper``
  becomes ``OptimWrapper`` off CUDA); its ``param_scheduler`` replaced by one
  linear warm-up over ``warmup_iters`` iterations (factor 0.1 -> 1); its
  ``custom_hooks`` dropped (EMA, pipeline / mode switches: schedules of
  hundreds of epochs that mean nothing in minutes; an EMA of a few hundred
  updates would still average the random start).

This measures what a model learns in a few minutes of CPU from scratch on an
easy set, not its COCO accuracy: use it to compare models within one run.
"""
import copy
import json
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

from mmengine.hooks import Hook

from ..checkpoint.fit import state_dict_fit, tensor_shapes
from ..engine.hooks.wall_clock_budget_hook import WallClockBudgetHook
from . import num_classes as nc
from .models import drop_pretrained

TOY_TRAIN_ANN = 'annotations/instances_train.json'
TOY_VAL_ANN = 'annotations/instances_val.json'


class EvalSampleCounter(Hook):
    """Counts the samples the validation / test loop predicted (what the
    evaluator scored) and their detections."""
    priority = 'LOWEST'

    def __init__(self):
        self.count = 0
        self.detections = 0

    def _add(self, outputs) -> None:
        self.count += len(outputs)
        self.detections += sum(len(o.pred_instances) for o in outputs)

    def after_val_iter(self,
                       runner,
                       batch_idx,
                       data_batch=None,
                       outputs=None) -> None:
        self._add(outputs)

    def after_test_iter(self,
                        runner,
                        batch_idx,
                        data_batch=None,
                        outputs=None) -> None:
        self._add(outputs)


def _bbox_metrics(metrics: Dict[str, float],
                  counter: EvalSampleCounter) -> Tuple[float, Optional[float]]:
    """(mAP, mAP@0.5) from CocoMetric's ``coco/bbox_mAP`` (any prefix).

    CocoMetric returns no metric at all when the model made no detection
    ("The testing results of the whole dataset is empty"): that is an AP of 0
    (pycocotools scores ground truth without detections as 0, not -1).
    """
    ap = [v for k, v in metrics.items() if k.endswith('bbox_mAP')]
    ap50 = [v for k, v in metrics.items() if k.endswith('bbox_mAP_50')]
    if not ap:
        if counter.detections == 0 and counter.count > 0:
            return 0.0, 0.0
        raise KeyError(
            f'no bbox_mAP in the evaluator output {sorted(metrics)}')
    return float(ap[0]), (float(ap50[0]) if ap50 else None)


# -------------------------------------------------------------------- toy mAP
def toy_classes(data_root: str) -> Tuple[str, ...]:
    """Class names of the toy set, in category-id order, from its train
    annotations."""
    path = osp.join(data_root, TOY_TRAIN_ANN)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'toy annotations {path} not found '
            '(write them with python tools/make_toy_dataset.py --out DIR)')
    with open(path) as f:
        cats = json.load(f)['categories']
    return tuple(c['name'] for c in sorted(cats, key=lambda c: c['id']))


def toy_config(cfg_path: str,
               data_root: str,
               work_dir: str,
               size: int = 256,
               batch_size: int = 4,
               seed: int = 0,
               warmup_iters: int = 20,
               device: str = 'cpu') -> Tuple[Any, List[str]]:
    """The config of ``cfg_path`` adapted to the toy set (see the module
    docstring).

    Returns ``(cfg, adapted)``: the MMEngine ``Config`` and the list of model
    fields that were set for the toy set (dotted paths).
    """
    from mmengine.config import Config

    root = data_root.rstrip('/') + '/'
    classes = toy_classes(root)
    cfg = Config.fromfile(cfg_path)
    drop_pretrained(cfg.model)
    adapted = nc.set_num_classes(cfg.model, len(classes), name=cfg_path)
    if cfg.model.get('eval_spatial_size') is not None:
        cfg.model.eval_spatial_size = (size, size)
        adapted.append('model.eval_spatial_size')
    preproc = cfg.model.get('data_preprocessor')
    if isinstance(preproc, dict) and preproc.get('batch_augments'):
        preproc['batch_augments'] = None
        adapted.append('model.data_preprocessor.batch_augments')

    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(size, size), keep_ratio=False),
        dict(type='RandomFlip', prob=0.5),
        dict(
            type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
        dict(type='PackDetInputs'),
    ]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(size, size), keep_ratio=False),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                       'scale_factor')),
    ]

    def dataset(ann, prefix, pipeline, **kw):
        return dict(
            type='CocoDataset',
            data_root=root,
            ann_file=ann,
            data_prefix=dict(img=prefix),
            metainfo=dict(classes=classes),
            pipeline=pipeline,
            backend_args=None,
            **kw)

    cfg.train_dataloader = dict(
        batch_size=batch_size,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dataset(
            TOY_TRAIN_ANN,
            'train/',
            train_pipeline,
            filter_cfg=dict(filter_empty_gt=True, min_size=1)))
    cfg.val_dataloader = dict(
        batch_size=batch_size,
        num_workers=0,
        persistent_workers=False,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dataset(TOY_VAL_ANN, 'val/', test_pipeline, test_mode=True))
    cfg.val_evaluator = dict(
        type='CocoMetric',
        ann_file=root + TOY_VAL_ANN,
        metric='bbox',
        format_only=False,
        backend_args=None)
    cfg.val_cfg = dict(type='ValLoop')
    for key in ('test_dataloader', 'test_evaluator', 'test_cfg'):
        cfg.pop(key, None)

    optim = copy.deepcopy(cfg.optim_wrapper)
    if optim.get('type') == 'AmpOptimWrapper' and device != 'cuda':
        optim['type'] = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            optim.pop(key, None)
    cfg.optim_wrapper = optim
    cfg.param_scheduler = ([
        dict(
            type='LinearLR',
            start_factor=0.1,
            end_factor=1.0,
            by_epoch=False,
            begin=0,
            end=warmup_iters)
    ] if warmup_iters > 0 else [])
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=batch_size)
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=10**9, val_interval=10**9)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=10**9, by_epoch=False, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.log_processor = dict(
        type='LogProcessor', window_size=50, by_epoch=False)
    cfg.custom_hooks = []
    cfg.randomness = dict(seed=seed)
    cfg.load_from = None
    cfg.resume = False
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    return cfg, adapted


def train_and_evaluate(cfg, budget_s: float) -> Dict[str, Any]:
    """Train ``cfg`` (from :func:`toy_config`) for ``budget_s`` seconds of wall
    clock, then run its validation loop.

    Returns ``dict(map, map50, iters, train_s, eval_images, eval_detections)``.
    """
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    budget = WallClockBudgetHook(budget_s)
    counter = EvalSampleCounter()
    runner.register_hook(budget)
    runner.register_hook(counter)
    runner.train()
    metrics = runner.val_loop.run()
    ap, ap50 = _bbox_metrics(metrics, counter)
    return dict(
        map=ap,
        map50=ap50,
        iters=budget.iters,
        train_s=budget.train_s,
        eval_images=counter.count,
        eval_detections=counter.detections)


# -------------------------------------------------------------------- COCO AP
def coco_config(cfg_path: str, coco_root: str, checkpoint: str, work_dir: str):
    """The config of ``cfg_path`` with its test set under ``coco_root`` and
    ``load_from=checkpoint`` (see the module docstring)."""
    from mmengine.config import Config

    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} not found')
    cfg = Config.fromfile(cfg_path)
    drop_pretrained(cfg.model)
    loader = cfg.get('test_dataloader')
    dataset = loader.get('dataset') if loader else None
    if not dataset or not dataset.get('ann_file'):
        raise ValueError(
            f'{cfg_path}: test_dataloader.dataset.ann_file is not set; '
            '--coco-root needs it to find the annotations')
    ann = dataset['ann_file']
    ann_path = ann if osp.isabs(ann) else osp.join(coco_root, ann)
    if not osp.isfile(ann_path):
        raise FileNotFoundError(
            f'{ann_path} not found: --coco-root must hold the config\'s '
            f'test_dataloader.dataset.ann_file ({ann!r})')
    dataset['data_root'] = coco_root.rstrip('/') + '/'
    loader['num_workers'] = 0
    loader['persistent_workers'] = False
    evaluators = cfg.test_evaluator if isinstance(
        cfg.test_evaluator, list) else [cfg.test_evaluator]
    for ev in evaluators:
        if 'ann_file' in ev:
            ev['ann_file'] = ann_path
    cfg.load_from = checkpoint
    cfg.resume = False
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    return cfg


def checkpoint_coverage(model, checkpoint: str) -> Tuple[int, int, List[str]]:
    """``(covered, total, examples)``: model tensors that the checkpoint holds
    under the same name with the same shape (``module.`` prefixes ignored, as
    the runner does), the model's tensor count, and up to 5 names not
    covered."""
    from mmengine.runner.checkpoint import _load_checkpoint

    ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    state = {
        (k[len('module.'):] if k.startswith('module.') else k): v
        for k, v in state.items()
    }
    own = tensor_shapes(model.state_dict())
    fit = state_dict_fit(own, tensor_shapes(state))
    missing = fit.missing + [k for k, _, _ in fit.mismatched]
    return len(own) - len(missing), len(own), missing[:5]


def evaluate_checkpoint(cfg) -> Dict[str, Any]:
    """``runner.test()`` of ``cfg`` (from :func:`coco_config`).

    Returns ``dict(map, map50, eval_images, eval_detections, ckpt_covered,
    ckpt_total, ckpt_missing)``.
    """
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    counter = EvalSampleCounter()
    runner.register_hook(counter)
    metrics = runner.test()
    ap, ap50 = _bbox_metrics(metrics, counter)
    model = runner.model.module if hasattr(runner.model,
                                           'module') else runner.model
    covered, total, missing = checkpoint_coverage(model, cfg.load_from)
    return dict(
        map=ap,
        map50=ap50,
        eval_images=counter.count,
        eval_detections=counter.detections,
        ckpt_covered=covered,
        ckpt_total=total,
        ckpt_missing=missing)
