#!/usr/bin/env python
"""Plain DETRs vs the same DETRs + FDR / GO-LSD on the toy set, with ablations.

Trains every selected model (``--models``, plus ``--ablation`` variants) for
the same number of iterations with the same seeds and data order on CPU,
evaluates each with the config's ``CocoMetric`` on the toy val split (every
``--val-every`` iterations, so the learning curve shows whether the budget is
long enough) and prints, from this one run:

* one line per (model, seed): bbox mAP, AP50, AP75, median s/iter, loss;
* one line per model: mean (and spread) over the seeds;
* the mean learning curve of every model (mAP / AP75 at each evaluation);
* the FDR offset statistics of every model (see below);
* one ratio line per model against the reference model (the first one):
  ``ratio <model>/<reference>: mAP r  AP50 r  AP75 r  s/iter r``.

Built-in models (configs in ``configs/dino_fdr/toy/`` and
``configs/deformable_detr_fdr/toy/``): ``DINO``, ``DINO+FDR`` (D-FINE's
VFL class loss since 2026-12-07; before, DINO's FocalLoss),
``DINO+FDR+pre`` (D-FINE's layer-0 pre head makes the FDR reference),
``DDETR`` (mmdet's two-stage Deformable DETR with box refinement) and
``DDETR+FDR``.  An ablation is a built-in model plus config overrides::

    --ablation up1 base=DINO+FDR model.bbox_head.bbox_coder.type=FDRBBoxCoder \
        model.bbox_head.bbox_coder.up=1.0

``--jobs 2`` trains two runs at a time in separate processes (each with
``--threads`` threads); s/iter then also reflects the other job's load.

**FDR offset statistics** (after training, on the val split): for every
ground-truth box, the query whose final box overlaps it most; the edge
offsets ``d`` (paper Eq. 2, in units of ``W(n)``: ``x1 = cx - (c/2 + d_l) w
/ c``) that FDR would need to reach the ground truth from that query's
initial reference (``references[0]``: the two-stage proposal, or the pre
box with ``pre_refine``) and from its layer-0 box, with the coder settings
of the first FDR model (``reg_scale`` ``c``, ``up`` ``a``): median ``|d|``,
the fraction beyond ``a c`` (only the two coarse outer bins remain) and
beyond ``2 a c`` (out of reach: clipped); ``d / c`` is the edge shift in
reference widths.  The same numbers for the positive denoising queries of
DINO (noised ground truth references, mmdet's ``CdnQueryGenerator``).
Each run's final weights are saved as ``<work-dir>/<model>_s<seed>/final.pth``
(and MMEngine's resumable ``iter_<N>.pth``) and ``--json`` is rewritten after
every run.

**Longer budgets without starting over** (``--resume``): every run whose work
dir holds an MMEngine checkpoint (``last_checkpoint``) continues from it to
``--iters`` (model, optimizer and scheduler state; the data order continues
where it stopped, since the sampler is advanced without loading images).  The
random generators are re-seeded with ``seed + start iteration``, so the
continuation draws fresh noise rather than replaying the first iterations'.
The earlier points of each learning curve are taken from the ``--json`` file
of the earlier run (read before it is rewritten); a run's ``s_per_iter`` and
losses then cover only the continued part.  A continued run is not bitwise an
uninterrupted one (the generator streams differ); it is an equally valid
sample of the same training.

This is a learning comparison on synthetic data at toy size from scratch,
not a COCO result; one seed is one sample (use >= 3).  Measured runs,
their conditions and the diagnosis: docs/fdr_in_detrs.md.

Examples::

    python tools/experiments/dino_fdr_toy.py --iters 300
    python tools/experiments/dino_fdr_toy.py --iters 1200 --seeds 0 1 2 \\
        --models DINO DINO+FDR --val-every 300 --jobs 2 --work-dir runs \\
        --json runs/results.json
    # the same runs, continued to 2400 iterations
    python tools/experiments/dino_fdr_toy.py --iters 2400 --seeds 0 1 2 \\
        --models DINO DINO+FDR --val-every 300 --jobs 2 --work-dir runs \\
        --json runs/results.json --resume
"""
import argparse
import json
import math
import os
import os.path as osp
import tempfile
import time

from dfine_mmdet.benchmark.toy_training import build_cfg, ensure_toy_data

PROJECT_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DINO_TOY = osp.join(PROJECT_ROOT, 'configs', 'dino_fdr', 'toy')
DDETR_TOY = osp.join(PROJECT_ROOT, 'configs', 'deformable_detr_fdr', 'toy')
CONFIGS = {
    'DINO':
    osp.join(DINO_TOY, 'dino-4scale_r18_toy.py'),
    'DINO+FDR':
    osp.join(DINO_TOY, 'dino-4scale_r18_fdr_toy.py'),
    'DINO+FDR+pre':
    osp.join(DINO_TOY, 'dino-4scale_r18_fdr_pre_toy.py'),
    'DDETR':
    osp.join(DDETR_TOY, 'deformable-detr-refine-twostage_r18_toy.py'),
    'DDETR+FDR':
    osp.join(DDETR_TOY, 'deformable-detr-refine-twostage_r18_fdr_toy.py'),
}
DEFAULT_MODELS = ['DINO', 'DINO+FDR', 'DINO+FDR+pre']


def _parse_value(text):
    """``key=value`` value as MMEngine's ``DictAction`` parses it."""
    from mmengine.config import DictAction
    return DictAction._parse_iterable(text)


def parse_ablation(tokens):
    """``[LABEL, 'base=MODEL'?, 'key=value', ...]`` -> (label, base,
    overrides).  The base defaults to ``DINO+FDR``."""
    if not tokens:
        raise ValueError('--ablation needs a label')
    label, base, overrides = tokens[0], 'DINO+FDR', {}
    for tok in tokens[1:]:
        if '=' not in tok:
            raise ValueError(f'--ablation {label}: expected key=value, got '
                             f'{tok!r}')
        key, value = tok.split('=', 1)
        if key == 'base':
            base = value
        else:
            overrides[key] = _parse_value(value)
    if base not in CONFIGS:
        raise ValueError(f'--ablation {label}: unknown base {base!r} '
                         f'(built-in models: {", ".join(CONFIGS)})')
    if label in CONFIGS:
        raise ValueError(f'--ablation label {label!r} is a built-in model')
    return label, base, overrides


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--iters',
        type=int,
        default=300,
        help='training iterations of each run (default 300)')
    parser.add_argument(
        '--seeds',
        type=int,
        nargs='+',
        default=[0],
        help='training seeds; each model is trained once per '
        'seed')
    parser.add_argument(
        '--models',
        nargs='+',
        default=None,
        choices=list(CONFIGS),
        help='built-in models (default: '
        f'{" ".join(DEFAULT_MODELS)}; with --ablation: none)')
    parser.add_argument(
        '--ablation',
        nargs='+',
        action='append',
        default=[],
        metavar='LABEL [base=MODEL] KEY=VALUE',
        help='a built-in model (base, default DINO+FDR) with '
        'config overrides; repeatable')
    parser.add_argument(
        '--reference',
        default=None,
        help='model the ratios are taken against (default: '
        'the first model)')
    parser.add_argument(
        '--val-every',
        type=int,
        default=0,
        help='evaluate every N iterations (learning curve); '
        '0: only at the end')
    parser.add_argument(
        '--jobs',
        type=int,
        default=1,
        help='runs trained at the same time, one process '
        'each (default 1)')
    parser.add_argument(
        '--data',
        default=None,
        help='toy dataset dir (written when missing; default '
        '<work-dir>/toy_data)')
    parser.add_argument(
        '--data-seed',
        type=int,
        default=None,
        help='seed of a toy set written here (default: the '
        'first training seed)')
    parser.add_argument(
        '--work-dir',
        default=None,
        help='work dir (default: a temporary directory)')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch.set_num_threads per run (default 1)')
    parser.add_argument(
        '--progress',
        type=int,
        default=0,
        help='print the loss every N iterations (0: never)')
    parser.add_argument(
        '--json',
        default=None,
        help='also write every result to this JSON file')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='continue every run from the checkpoint in its work dir '
        '(<work-dir>/<model>_s<seed>) to --iters; earlier curve points '
        'come from the --json file (needs --work-dir)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='overrides applied to EVERY model '
        '(key=value, as in tools/train.py)')
    return parser.parse_args(argv)


# --------------------------------------------------------------------- #
# FDR offset statistics
# --------------------------------------------------------------------- #
def edge_offsets(ref, gt_xyxy, reg_scale):
    """Edge distances ``d`` (l, t, r, b) of paper Eq. 2 that decode ``ref``
    (``[n, 4]`` cxcywh) onto ``gt_xyxy`` (``[n, 4]``), unclipped, ``[n,
    4]``."""
    import torch
    c = abs(float(reg_scale))
    cx, cy, w, h = ref.unbind(-1)
    sx, sy = w.clamp(min=1e-6) / c, h.clamp(min=1e-6) / c
    return torch.stack([(cx - gt_xyxy[:, 0]) / sx - c / 2,
                        (cy - gt_xyxy[:, 1]) / sy - c / 2,
                        (gt_xyxy[:, 2] - cx) / sx - c / 2,
                        (gt_xyxy[:, 3] - cy) / sy - c / 2], -1)


def offset_stats(d, reg_scale, up):
    """Median ``|d|`` and the fractions beyond ``a c`` (coarse outer bins)
    and ``2 a c`` (out of reach) of edge distances ``d``."""
    d = d.reshape(-1).abs()
    if d.numel() == 0:
        return dict(
            n=0, median=float('nan'), coarse=float('nan'), out=float('nan'))
    ac = abs(float(up)) * abs(float(reg_scale))
    return dict(
        n=int(d.numel()),
        median=float(d.median()),
        coarse=float((d > ac).float().mean()),
        out=float((d > 2 * ac).float().mean()))


def reach_ceiling(ref, gt_xyxy, reg_scale, up):
    """IoU with the GT (``[n]``) of the best box FDR can decode around
    ``ref`` (``[n, 4]`` cxcywh): the GT's edge offsets clipped to ``W(n)``'s
    range ``[-2ac, 2ac]``."""
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps

    from dfine_mmdet.models.task_modules.coders.fdr_coder import distance2bbox
    reach = 2 * abs(float(up)) * abs(float(reg_scale))
    d = edge_offsets(ref, gt_xyxy, reg_scale).clamp(-reach, reach)
    best = bbox_cxcywh_to_xyxy(distance2bbox(ref, d, abs(float(reg_scale))))
    return bbox_overlaps(best, gt_xyxy, is_aligned=True)


def fdr_coder_settings(cfg):
    """``(reg_scale, up)`` of an FDR config's coder (D-FINE's defaults)."""
    coder = cfg.model.bbox_head.get('bbox_coder') or {}
    return float(coder.get('reg_scale', 4.0)), float(coder.get('up', 0.5))


def _normalised_gt(sample):
    """GT boxes ``[n, 4]`` xyxy in ``[0, 1]`` of the image, from a sample
    of a test pipeline: mmdet's test pipelines load the annotations after
    ``Resize`` (the toy configs do), so they are in original pixels."""
    gt = sample.gt_instances.bboxes
    gt = getattr(gt, 'tensor', gt).float()
    h, w = sample.ori_shape[:2]
    return gt / gt.new_tensor([w, h, w, h])


def measure_offsets(model, dataloader, reg_scale, up, max_batches=8):
    """Offsets FDR needs from the proposal and from the layer-0 box to the
    ground truth, for the best-overlapping final query of every GT box; and
    the final boxes' mean IoU with their GT.  See the module docstring."""
    import torch
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
    model.eval()
    from_ref, from_l0, best_iou, ceiling = [], [], [], []
    with torch.no_grad():
        for b, data in enumerate(dataloader):
            if b >= max_batches:
                break
            data = model.data_preprocessor(data, False)
            samples = data['data_samples']
            feats = model.extract_feat(data['inputs'])
            head_in = model.forward_transformer(feats, samples)
            refs = head_in['references']
            _, coords = model.bbox_head(head_in['hidden_states'], refs)
            for i, s in enumerate(samples):
                gt = _normalised_gt(s)
                if len(gt) == 0:
                    continue
                final = bbox_cxcywh_to_xyxy(coords[-1, i])
                iou = bbox_overlaps(gt, final)
                best, q = iou.max(1)
                best_iou.append(best)
                from_ref.append(edge_offsets(refs[0][i][q], gt, reg_scale))
                ceiling.append(reach_ceiling(refs[0][i][q], gt, reg_scale, up))
                from_l0.append(edge_offsets(refs[1][i][q], gt, reg_scale))
    if not best_iou:
        return {}
    cat = torch.cat
    return dict(
        proposal=offset_stats(cat(from_ref), reg_scale, up),
        layer0=offset_stats(cat(from_l0), reg_scale, up),
        final_iou=float(cat(best_iou).mean()),
        # share of GT boxes whose best final box / FDR's reach ceiling
        # (from references[0]) has IoU >= 0.75
        final_iou75=float((cat(best_iou) >= 0.75).float().mean()),
        ceiling_iou75=float((cat(ceiling) >= 0.75).float().mean()))


def measure_dn_offsets(model,
                       dataloader,
                       reg_scale,
                       up,
                       max_batches=8,
                       seed=0):
    """The same statistics for the positive denoising queries of mmdet's
    ``CdnQueryGenerator`` (reference = noised GT box), or ``{}`` for a
    model without one."""
    import torch
    gen = getattr(model, 'dn_query_generator', None)
    if gen is None:
        return {}
    torch.manual_seed(seed)
    ds = []
    for b, data in enumerate(dataloader):
        if b >= max_batches:
            break
        samples = model.data_preprocessor(data, False)['data_samples']
        norm = [_normalised_gt(s) for s in samples]
        for s, gt in zip(samples, norm):
            # the generator normalises by img_shape: GT in that frame
            h, w = s.img_shape[:2]
            s.gt_instances.bboxes = gt * gt.new_tensor([w, h, w, h])
        _, dn_box, _, meta = gen(samples)
        groups = meta['num_denoising_groups']
        per_group = meta['num_denoising_queries'] // groups
        for i, gt in enumerate(norm):
            m = len(gt)
            if m == 0:
                continue
            idx = (torch.arange(groups)[:, None] * per_group +
                   torch.arange(m)[None]).flatten()
            ref = dn_box[i, idx].sigmoid()
            ds.append(edge_offsets(ref, gt.repeat(groups, 1), reg_scale))
    if not ds:
        return {}
    return dict(dn_positive=offset_stats(torch.cat(ds), reg_scale, up))


# --------------------------------------------------------------------- #
# one run
# --------------------------------------------------------------------- #
def train_and_eval(spec):
    """Train one (model, seed) run and evaluate it.

    Args:
        spec (dict): ``name``, ``config``, ``overrides`` (model-specific),
            ``cfg_options`` (common), ``seed``, ``iters``, ``val_every``,
            ``data_dir``, ``work_dir``, ``threads``, ``coder`` (``(reg_scale,
            up)`` for the offset statistics); optional ``checkpoint`` (an
            MMEngine checkpoint to resume from, see ``resume_checkpoint``)
            and ``earlier`` (the earlier result of this run, whose curve
            points up to the start iteration are kept).

    Returns:
        dict: ``mAP``, ``mAP50``, ``mAP75``, ``s_per_iter``, ``first_loss``,
        ``last_loss`` (means over the first / last 10 % of the iterations
        trained here), ``curve`` (``[iter, mAP, mAP50, mAP75]`` per
        evaluation), ``offsets``, ``start_iter`` (0, or the iteration a
        resumed run continued from).
    """
    import torch
    torch.set_num_threads(spec['threads'])
    from mmengine.hooks import Hook
    from mmengine.runner import Runner, set_random_seed

    class Recorder(Hook):
        """Total loss and wall time of every iteration; every evaluation."""
        priority = 'LOWEST'

        def __init__(self):
            self.losses, self.times, self.curve = [], [], []
            self.tic = None
            self.start_iter = 0

        def before_train(self, runner):
            # called after MMEngine has loaded a resumed checkpoint
            self.start_iter = runner.iter
            if self.start_iter:
                # fresh noise for the continuation instead of a replay of
                # the generator streams of iteration 0
                set_random_seed(spec['seed'] + self.start_iter)

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self.tic = time.perf_counter()

        def after_train_iter(self,
                             runner,
                             batch_idx,
                             data_batch=None,
                             outputs=None):
            self.times.append(time.perf_counter() - self.tic)
            self.losses.append(float(outputs['loss'].detach()))
            n = len(self.losses)
            if spec.get('progress') and n % spec['progress'] == 0:
                print(
                    f'    [{spec["name"]} seed {spec["seed"]}] iter {n}: '
                    f'loss {self.losses[-1]:.2f}, '
                    f'{self.times[-1]:.2f} s/iter',
                    flush=True)

        def after_val_epoch(self, runner, metrics=None):
            m = metrics or {}
            self.curve.append([
                runner.iter,
                m.get('coco/bbox_mAP', 0.0),
                m.get('coco/bbox_mAP_50', 0.0),
                m.get('coco/bbox_mAP_75', 0.0)
            ])

    options = dict(spec['cfg_options'])
    options.update(spec['overrides'])
    args = argparse.Namespace(
        config=spec['config'],
        cfg_options=options,
        iters=spec['iters'],
        seed=spec['seed'])
    cfg = build_cfg(args, spec['data_dir'], spec['work_dir'])
    every = spec['val_every'] or spec['iters']
    cfg.train_cfg.val_interval = min(every, spec['iters'])
    if spec.get('checkpoint'):
        cfg.resume = True
        cfg.load_from = spec['checkpoint']
    runner = Runner.from_cfg(cfg)
    rec = Recorder()
    runner.register_hook(rec)
    runner.train()
    if rec.start_iter:
        earlier = (spec.get('earlier') or {}).get('curve', [])
        kept = [p for p in earlier if p[0] <= rec.start_iter]
        if not kept:
            print(
                f'    [{spec["name"]} seed {spec["seed"]}] resumed at '
                f'{rec.start_iter}: no earlier curve points (not in the '
                '--json file)',
                flush=True)
        rec.curve = kept + rec.curve
    if not rec.curve or rec.curve[-1][0] != spec['iters']:
        metrics = runner.val_loop.run()
        rec.after_val_epoch(runner, metrics)
    if not all(math.isfinite(v) for v in rec.losses):
        raise RuntimeError(f'{spec["name"]}: non-finite training loss')
    n = len(rec.losses)
    k = max(1, n // 10)
    reg_scale, up = spec['coder']
    model = runner.model
    torch.save(model.state_dict(), osp.join(spec['work_dir'], 'final.pth'))
    loader = runner.val_dataloader
    offsets = measure_offsets(model, loader, reg_scale, up)
    offsets.update(
        measure_dn_offsets(model, loader, reg_scale, up, seed=spec['seed']))
    _, mAP, mAP50, mAP75 = rec.curve[-1]
    return dict(
        mAP=mAP,
        mAP50=mAP50,
        mAP75=mAP75,
        # median: robust to the first (warm-up) iterations and load spikes
        s_per_iter=float(torch.tensor(rec.times).median()),
        first_loss=sum(rec.losses[:k]) / k,
        last_loss=sum(rec.losses[-k:]) / k,
        curve=rec.curve,
        offsets=offsets,
        start_iter=rec.start_iter)


def resume_checkpoint(work_dir, iters):
    """The MMEngine checkpoint a ``--resume`` run continues from.

    Args:
        work_dir (str): the run's work dir.
        iters (int): the run's new budget.

    Returns:
        str | None: the latest checkpoint in ``work_dir`` (None: none, the
        run starts from iteration 0).

    Raises:
        ValueError: the checkpoint is already at ``iters`` or beyond.
    """
    import torch
    from mmengine.runner import find_latest_checkpoint
    checkpoint = find_latest_checkpoint(work_dir)
    if checkpoint is None:
        return None
    start = torch.load(
        checkpoint, map_location='cpu', weights_only=False)['meta']['iter']
    if start >= iters:
        raise ValueError(f'--resume: {checkpoint} is at iteration {start}, '
                         f'not before --iters {iters}; nothing to train')
    return checkpoint


def _ratio(a, b):
    return a / b if b else float('nan')


def _mean(values):
    return sum(values) / len(values)


def _std(values):
    if len(values) < 2:
        return 0.0
    m = _mean(values)
    return math.sqrt(sum((v - m)**2 for v in values) / (len(values) - 1))


def _run_all(specs, jobs):
    """Run the specs (``jobs`` at a time, in spawned processes when > 1);
    yields ``(spec, result)`` in completion order."""
    if jobs <= 1:
        for spec in specs:
            try:
                yield spec, train_and_eval(spec)
            except Exception as err:  # report it, keep the other runs
                yield spec, err
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    with ProcessPoolExecutor(
            max_workers=jobs, mp_context=mp.get_context('spawn')) as pool:
        futures = {pool.submit(train_and_eval, s): s for s in specs}
        for fut in as_completed(futures):
            try:
                yield futures[fut], fut.result()
            except Exception as err:  # report it, keep the other runs
                yield futures[fut], err


def _dump_json(args, coder, means, results, earlier=None):
    """Write ``--json``; runs of ``earlier`` (a resumed invocation's
    earlier file) that are not redone yet are kept as they were."""
    merged = {}
    for name, runs in results.items():
        merged[name] = {
            int(s): r
            for s, r in (earlier or {}).get(name, {}).items()
        }
        merged[name].update(runs)
    results = merged
    with open(args.json, 'w') as f:
        json.dump(
            dict(
                args=vars(args),
                coder=coder,
                means=means,
                runs={
                    n: {
                        str(s): r
                        for s, r in runs.items()
                    }
                    for n, runs in results.items()
                }),
            f,
            indent=1)


def _fmt_stats(st):
    return (f'|d| median {st["median"]:.2f}, >ac {st["coarse"]:.0%}, '
            f'>2ac {st["out"]:.0%}')


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    models = {}
    for name in (args.models if args.models is not None else
                 ([] if args.ablation else DEFAULT_MODELS)):
        models[name] = (CONFIGS[name], {})
    for tokens in args.ablation:
        label, base, overrides = parse_ablation(tokens)
        models[label] = (CONFIGS[base], overrides)
    if not models:
        raise ValueError('no model selected (--models / --ablation)')
    reference = args.reference or next(iter(models))
    if reference not in models:
        raise ValueError(f'--reference {reference!r} is not among the '
                         f'models {list(models)}')
    # coder settings for the offset statistics: the (first) FDR model's
    coder = (4.0, 0.5)
    for config, overrides in models.values():
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(dict(args.cfg_options, **overrides))
        if 'FDR' in cfg.model.bbox_head.type:
            coder = fdr_coder_settings(cfg)
            break

    if args.resume and not args.work_dir:
        raise ValueError('--resume continues the runs in --work-dir: give it')
    earlier_runs = {}
    if args.resume and args.json and osp.exists(args.json):
        with open(args.json) as f:
            earlier_runs = json.load(f).get('runs', {})
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='dino_fdr_toy_')
    os.makedirs(work_dir, exist_ok=True)
    data_seed = args.seeds[0] if args.data_seed is None else args.data_seed
    data_dir = ensure_toy_data(
        args.data or osp.join(work_dir, 'toy_data'), data_seed)
    print(
        f'dino_fdr_toy: {args.iters} iterations per run, seeds '
        f'{args.seeds}, {args.threads} thread(s) per run, {args.jobs} '
        f'job(s), data {data_dir}, models {list(models)}',
        flush=True)
    for name, (config, overrides) in models.items():
        print(
            f'  {name}: {osp.relpath(config, PROJECT_ROOT)} '
            f'{overrides or ""}',
            flush=True)

    specs = []
    for seed in args.seeds:
        for name, (config, overrides) in models.items():
            tag = name.replace('/', '_').replace('+', '_')
            specs.append(
                dict(
                    name=name,
                    config=config,
                    overrides=overrides,
                    cfg_options=args.cfg_options,
                    seed=seed,
                    iters=args.iters,
                    val_every=args.val_every,
                    data_dir=data_dir,
                    work_dir=osp.join(work_dir, f'{tag}_s{seed}'),
                    threads=args.threads,
                    coder=coder,
                    progress=args.progress,
                    earlier=earlier_runs.get(name, {}).get(str(seed))))
            if args.resume:
                checkpoint = resume_checkpoint(specs[-1]['work_dir'],
                                               args.iters)
                specs[-1]['checkpoint'] = checkpoint
                print(
                    f'  {name} seed {seed}: ' +
                    (f'continues {checkpoint}' if checkpoint else
                     'no checkpoint to resume, starts at iteration 0'),
                    flush=True)
    results = {name: {} for name in models}
    t0 = time.time()
    failed = []
    for spec, r in _run_all(specs, args.jobs):
        if isinstance(r, Exception):
            failed.append(spec['name'])
            print(
                f'  seed {spec["seed"]} {spec["name"]:16s} FAILED: '
                f'{type(r).__name__}: {r}',
                flush=True)
            continue
        results[spec['name']][spec['seed']] = r
        if r['start_iter']:
            print(
                f'  seed {spec["seed"]} {spec["name"]:16s} continued from '
                f'iteration {r["start_iter"]}',
                flush=True)
        print(
            f'  seed {spec["seed"]} {spec["name"]:16s} bbox mAP '
            f'{r["mAP"]:.3f}  AP50 {r["mAP50"]:.3f}  AP75 '
            f'{r["mAP75"]:.3f}  {r["s_per_iter"]:.2f} s/iter  loss '
            f'{r["first_loss"]:.2f} -> {r["last_loss"]:.2f}  '
            f'[{(time.time() - t0) / 60:.1f} min]',
            flush=True)
        for key in ('proposal', 'layer0', 'dn_positive'):
            if key in r['offsets']:
                print(
                    f'      offsets from {key}: '
                    f'{_fmt_stats(r["offsets"][key])}',
                    flush=True)
        if 'final_iou75' in r['offsets']:
            o = r['offsets']
            print(
                f'      GT boxes with IoU >= 0.75: best final box '
                f'{o["final_iou75"]:.0%}, FDR reach ceiling from '
                f'references[0] {o["ceiling_iou75"]:.0%}',
                flush=True)
        if args.json:  # partial results survive an interrupted run
            _dump_json(args, coder, {}, results, earlier_runs)

    # a model with a failed run is left out of the summary (reported above)
    results = {n: r for n, r in results.items() if n not in failed}
    if reference not in results:
        raise RuntimeError(f'the reference model {reference} failed')
    means = {}
    print(f'\nmeans over seeds {args.seeds} ({args.iters} iterations):')
    for name, runs in results.items():
        runs = [runs[s] for s in args.seeds]
        means[name] = {
            k: _mean([r[k] for r in runs])
            for k in ('mAP', 'mAP50', 'mAP75', 's_per_iter')
        }
        m = means[name]
        print(f'{name:16s} bbox mAP {m["mAP"]:.3f} +- '
              f'{_std([r["mAP"] for r in runs]):.3f}  AP50 '
              f'{m["mAP50"]:.3f}  AP75 {m["mAP75"]:.3f} +- '
              f'{_std([r["mAP75"] for r in runs]):.3f}  s/iter '
              f'{m["s_per_iter"]:.2f}')
    print('\nlearning curve (mean over seeds): iteration: mAP / AP75')
    for name, runs in results.items():
        curves = [runs[s]['curve'] for s in args.seeds]
        points = []
        for j in range(min(len(c) for c in curves)):
            it = curves[0][j][0]
            points.append(f'{it}: {_mean([c[j][1] for c in curves]):.3f} / '
                          f'{_mean([c[j][3] for c in curves]):.3f}')
        print(f'{name:16s} ' + '  '.join(points))
    print(f'\nFDR offsets to GT (reg_scale c={coder[0]:g}, up a={coder[1]:g};'
          ' best final query per GT; mean over seeds of per-seed stats):')
    dn_done = False
    for name, runs in results.items():
        offs = [runs[s]['offsets'] for s in args.seeds]
        if not offs[0]:
            continue
        line = []
        for key in ('proposal', 'layer0'):
            st = {
                k: _mean([o[key][k] for o in offs])
                for k in ('median', 'coarse', 'out')
            }
            line.append(f'from {key}: {_fmt_stats(st)}')
        iou = _mean([o['final_iou'] for o in offs])
        i75 = _mean([o['final_iou75'] for o in offs])
        c75 = _mean([o['ceiling_iou75'] for o in offs])
        print(f'{name:16s} ' + '; '.join(line) + f'; final IoU {iou:.3f}; '
              f'IoU >= 0.75: final {i75:.0%}, reach ceiling {c75:.0%}')
        if not dn_done and 'dn_positive' in offs[0]:
            st = {
                k: _mean([o['dn_positive'][k] for o in offs])
                for k in ('median', 'coarse', 'out')
            }
            print(f'{"DN positives":16s} from noised GT: {_fmt_stats(st)}')
            dn_done = True
    if args.json:
        _dump_json(args, coder, means, results, earlier_runs)
    print()
    ref = means[reference]
    for name, m in means.items():
        if name == reference:
            continue
        print(
            f'ratio {name}/{reference}: mAP '
            f'{_ratio(m["mAP"], ref["mAP"]):.2f}  AP50 '
            f'{_ratio(m["mAP50"], ref["mAP50"]):.2f}  AP75 '
            f'{_ratio(m["mAP75"], ref["mAP75"]):.2f}  s/iter '
            f'{_ratio(m["s_per_iter"], ref["s_per_iter"]):.2f}',
            flush=True)
    if failed:
        raise RuntimeError(f'runs failed: {sorted(set(failed))} (see above)')
    return means


if __name__ == '__main__':
    main()
