#!/usr/bin/env python
"""DEIM recipe vs D-FINE recipe on the toy set, and DEIM-D-FINE-N vs
RTMDet-tiny: every number from one run.

(a) **Equal iterations.** D-FINE-N is trained from scratch on the synthetic toy
    set (``tools/make_toy_dataset.py``) with the D-FINE toy recipe
    (``configs/dfine/toy/dfine_hgnetv2_n_toy.py``) and with the DEIM toy recipe
    (``configs/deim_dfine/toy/deim_hgnetv2_n_toy.py``: MAL, SiLU decoder, Dense
    O2O Mosaic + batch MixUp under the epoch policy, quadratic warmup) for the
    same number of epochs (so the same iterations, batch and data), for every
    ``--seeds`` value (model init, data order and augmentation); ``--jobs``
    runs several trainings at once (separate processes, ``--threads`` each).
    Both run as epoch-based training so that the DEIM policy hook sees real
    epochs; DEIM's policy epochs are placed at DEIM-N's proportions (4 / 78 /
    148 of 160) of ``--epochs``.  The EMA weights are evaluated on the toy val
    split.  The two recipes of one seed run back to back, their order
    alternating between seeds (the machine load drifts).
(b) **Equal CPU budget.** ``tools/benchmark/compare.py --toy-minutes M`` on
    DEIM-D-FINE-N (``configs/deim_dfine/deim_hgnetv2_n_coco.py``) and
    RTMDet-tiny (MMDetection's config) on the same toy set: the same
    wall-clock training budget, data, seed and common toy pipeline for both
    (compare.py's rules: its own pipeline, no batch augments, linear warmup;
    so for DEIM this measures MAL + SiLU + unfrozen
    BN, not Dense O2O).  ``--compare-minutes 0`` skips it.

Printed: per run the iterations, seconds per iteration, first / last loss
window, EMA bbox mAP and mAP@0.5, the 1-minute load average before and after;
per seed the DEIM / D-FINE mAP ratio; the mean over seeds; for (b) each
model's iterations and toy mAP and the DEIM / RTMDet ratio.  The LAST line is a
one-line summary.  Use one thread (default) on a shared machine.

Example::

    python tools/experiments/deim_toy.py --epochs 8 --seeds 0 1 \\
        --compare-minutes 5
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
RECIPES = {
    'D-FINE':
    osp.join(ROOT, 'configs', 'dfine', 'toy', 'dfine_hgnetv2_n_toy.py'),
    'DEIM':
    osp.join(ROOT, 'configs', 'deim_dfine', 'toy', 'deim_hgnetv2_n_toy.py'),
}
DEIM_N_POLICY = (4 / 160, 78 / 160, 148 / 160)  # DEIM-N policy epochs / epochs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=8, help='epochs per run (a)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    p.add_argument('--threads', type=int, default=1)
    p.add_argument(
        '--data', default=None, help='toy set dir (written when missing)')
    p.add_argument(
        '--toy-images',
        type=int,
        nargs=2,
        default=[256, 64],
        metavar=('TRAIN', 'VAL'),
        help='images of the toy set written when --data holds none')
    p.add_argument(
        '--img-size',
        type=int,
        default=None,
        help='override the toy configs\' 128 px')
    p.add_argument(
        '--batch-size',
        type=int,
        default=None,
        help='override the toy configs\' 8')
    p.add_argument(
        '--compare-minutes',
        type=float,
        default=5.0,
        help='(b) training minutes per model in compare.py (0: skip (b))')
    p.add_argument(
        '--compare-size',
        type=int,
        default=256,
        help='(b) compare.py --toy-size')
    help_text = (
        '(a) runs trained at the same time, each in its own process with '
        '--threads threads (default 1: one after the other)')
    p.add_argument('--jobs', type=int, default=1, help=help_text)
    p.add_argument('--work-dir', default=None)
    p.add_argument(
        '--one', nargs=2, metavar=('RECIPE', 'SEED'), help=argparse.SUPPRESS)
    p.add_argument('--result', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def policy_epochs(epochs):
    e0, e1, e2 = (max(1, round(epochs * f)) for f in DEIM_N_POLICY)
    return [
        min(e0, epochs),
        min(max(e1, e0), epochs),
        min(max(e2, e1), epochs)
    ]


def build_cfg(recipe, args, data_dir, work_dir, seed):
    from mmengine.config import Config
    cfg = Config.fromfile(RECIPES[recipe])
    root = data_dir.rstrip('/') + '/'
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        loader.dataset.data_root = root
    cfg.val_evaluator.ann_file = root + 'annotations/instances_val.json'
    cfg.test_evaluator.ann_file = cfg.val_evaluator.ann_file
    if args.batch_size:
        cfg.train_dataloader.batch_size = args.batch_size
    if args.img_size:
        s = args.img_size
        cfg.model.eval_spatial_size = (s, s)
        for pipe in (cfg.train_dataloader.dataset.pipeline,
                     cfg.val_dataloader.dataset.pipeline):
            for t in pipe:
                if t['type'] == 'Resize':
                    t['scale'] = (s, s)
                if t['type'] == 'DEIMMosaic':
                    t['output_size'] = s // 2
        cfg.model.num_queries = min(cfg.model.num_queries,
                                    (s // 16)**2 + (s // 32)**2)
    cfg.train_cfg = dict(
        type='EpochBasedTrainLoop', max_epochs=args.epochs, val_interval=10**9)
    hook = cfg.default_hooks.stop_aug
    if hook.type == 'DenseO2OPolicyHook':
        hook.policy_epochs = policy_epochs(args.epochs)
    else:
        hook.stop_epoch = policy_epochs(args.epochs)[2]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10**9)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10**9)
    cfg.work_dir = work_dir
    cfg.visualizer.name = f'visualizer:{osp.abspath(work_dir)}'
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'WARNING'
    return cfg


def train_one(recipe, args, data_dir, work_root, seed):
    import torch
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class Curve(Hook):
        priority = 'LOWEST'

        def __init__(self):
            self.losses, self.start = [], None

        def before_train(self, runner):
            self.start = time.time()

        def after_train_iter(self,
                             runner,
                             batch_idx,
                             data_batch=None,
                             outputs=None):
            self.losses.append(float(outputs['loss']))

    work_dir = osp.join(work_root, f'{recipe}_seed{seed}')
    cfg = build_cfg(recipe, args, data_dir, work_dir, seed)
    load0 = os.getloadavg()[0]
    runner = Runner.from_cfg(cfg)
    curve = Curve()
    runner.register_hook(curve)
    runner.train()
    train_s = time.time() - curve.start
    metrics = runner.val_loop.run()  # EMA weights (EMAHook swaps them in)
    torch.set_num_threads(args.threads)
    n = len(curve.losses)
    w = max(1, n // 10)
    return dict(
        recipe=recipe,
        seed=seed,
        iters=n,
        train_s=train_s,
        s_per_iter=train_s / max(n, 1),
        loss_first=sum(curve.losses[:w]) / w,
        loss_last=sum(curve.losses[-w:]) / w,
        map=float(metrics.get('coco/bbox_mAP', 0.0)),
        map50=float(metrics.get('coco/bbox_mAP_50', 0.0)),
        load_before=load0,
        load_after=os.getloadavg()[0])


def run_compare(args, data_dir, work_root):
    out_dir = osp.join(work_root, 'compare')
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'compare.py'),
        'DEIM-D-FINE-N=configs/deim_dfine/deim_hgnetv2_n_coco.py',
        'RTMDet-tiny=mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
        '--toy-minutes',
        str(args.compare_minutes), '--toy-size',
        str(args.compare_size), '--toy-data', data_dir, '--threads',
        str(args.threads), '--measure', 'flops', '--out-dir', out_dir
    ]
    load0 = os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f'compare.py failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n'
            f'{proc.stderr[-2000:]}')
    with open(osp.join(out_dir, 'compare.json')) as f:
        res = json.load(f)
    rows = {r['label']: r for r in res['models']}
    return rows, load0, os.getloadavg()[0], ' '.join(cmd[1:])


def run_all(todo, args, data_dir, work_root, argv):
    """Train every (recipe, seed) of ``todo``: in this process, or ``--jobs``
    at a time in subprocesses (same arguments, one run each)."""
    if args.jobs <= 1:
        return [
            train_one(recipe, args, data_dir, work_root, seed)
            for recipe, seed in todo
        ]
    base = [sys.executable, osp.abspath(__file__)
            ] + list(sys.argv[1:] if argv is None else argv)
    base += ['--data', data_dir, '--work-dir', work_root]
    pending, running, results = list(todo), [], {}
    while pending or running:
        while pending and len(running) < args.jobs:
            recipe, seed = pending.pop(0)
            out = osp.join(work_root, f'result_{recipe}_{seed}.json')
            proc = subprocess.Popen(
                base +
                ['--one', recipe, str(seed), '--result', out],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True)
            running.append((recipe, seed, out, proc))
        time.sleep(2)
        for item in list(running):
            recipe, seed, out, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            err = proc.stderr.read()
            if proc.returncode != 0 or not osp.isfile(out):
                raise SystemExit(
                    f'{recipe} seed {seed} failed ({proc.returncode}):\n'
                    f'{err[-3000:]}')
            with open(out) as f:
                results[(recipe, seed)] = json.load(f)
    return [results[k] for k in todo]


def main(argv=None):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.one:
        r = train_one(args.one[0], args, args.data, args.work_dir,
                      int(args.one[1]))
        with open(args.result, 'w') as f:
            json.dump(r, f)
        return [r]
    work_root = args.work_dir or tempfile.mkdtemp(prefix='deim_toy_')
    os.makedirs(work_root, exist_ok=True)
    data_dir = osp.abspath(args.data or osp.join(work_root, 'toy_data'))
    if not osp.isfile(osp.join(data_dir, 'annotations', 'instances_val.json')):
        from dfine_mmdet.benchmark.toy_data import make_toy_dataset
        make_toy_dataset(
            data_dir,
            seed=0,
            num_train=args.toy_images[0],
            num_val=args.toy_images[1])
    print(
        f'deim_toy: {args.epochs} epochs per run, seeds {args.seeds}, threads '
        f'{args.threads}, DEIM policy epochs {policy_epochs(args.epochs)}, '
        f'data {data_dir}, {os.cpu_count()} CPUs, load average '
        f'{os.getloadavg()[0]:.1f}',
        flush=True)
    print('(a) equal iterations, EMA weights on the toy val split', flush=True)
    todo = []
    for k, seed in enumerate(args.seeds):
        order = ['D-FINE', 'DEIM'] if k % 2 == 0 else ['DEIM', 'D-FINE']
        todo += [(recipe, seed) for recipe in order]
    runs = run_all(todo, args, data_dir, work_root, argv)
    for r in runs:
        print(
            f'  {r["recipe"]:6s} seed {r["seed"]}: {r["iters"]} iters, '
            f'{r["s_per_iter"]:.2f} s/iter, loss {r["loss_first"]:.2f} -> '
            f'{r["loss_last"]:.2f}, bbox mAP {r["map"]:.3f}, mAP@0.5 '
            f'{r["map50"]:.3f} (load {r["load_before"]:.1f} -> '
            f'{r["load_after"]:.1f})',
            flush=True)
    ratios = []
    for seed in args.seeds:
        d = next(r for r in runs
                 if r['seed'] == seed and r['recipe'] == 'D-FINE')
        e = next(r for r in runs
                 if r['seed'] == seed and r['recipe'] == 'DEIM')
        ratio = e['map'] / d['map'] if d['map'] > 0 else float('nan')
        ratios.append(ratio)
        print(f'  seed {seed}: DEIM / D-FINE mAP {e["map"]:.3f} / '
              f'{d["map"]:.3f} = {ratio:.2f}x (mAP@0.5 {e["map50"]:.3f} / '
              f'{d["map50"]:.3f}; iterations {e["iters"]} / {d["iters"]})')
    mean = {
        rec: sum(r['map']
                 for r in runs if r['recipe'] == rec) / len(args.seeds)
        for rec in RECIPES
    }
    mean_ratio = mean['DEIM'] / mean['D-FINE'] if mean[
        'D-FINE'] > 0 else float('nan')
    print(
        f'  mean over {len(args.seeds)} seeds: DEIM {mean["DEIM"]:.3f}, '
        f'D-FINE {mean["D-FINE"]:.3f}, ratio {mean_ratio:.2f}x',
        flush=True)
    summary = ('(a) DEIM/D-FINE toy mAP at equal iterations: '
               f'{mean["DEIM"]:.3f}/{mean["D-FINE"]:.3f} = {mean_ratio:.2f}x')
    if args.compare_minutes > 0:
        print(
            '(b) equal CPU budget: compare.py --toy-minutes '
            f'{args.compare_minutes:g}',
            flush=True)
        rows, l0, l1, cmd = run_compare(args, data_dir, work_root)
        print(f'  command: {cmd}')
        maps = {}
        for label in ('DEIM-D-FINE-N', 'RTMDet-tiny'):
            r = rows.get(label, {})
            acc = r.get('accuracy') or {}
            maps[label] = r.get('ap')
            print(
                f'  {label:13s}: toy mAP '
                f'{maps[label] if maps[label] is not None else "n/a"}, iters '
                f'{acc.get("iters", "n/a")}, status {r.get("status")}, errors '
                f'{r.get("errors") or "-"}')
        d, t = maps['DEIM-D-FINE-N'], maps['RTMDet-tiny']
        ratio = d / t if d is not None and t else float('nan')
        print(f'  DEIM-D-FINE-N / RTMDet-tiny toy mAP = {ratio:.2f}x (load '
              f'{l0:.1f} -> {l1:.1f})')
        summary += ('; (b) DEIM-D-FINE-N/RTMDet-tiny at equal CPU time: '
                    f'{ratio:.2f}x')
    print(summary, flush=True)
    return runs


if __name__ == '__main__':
    main()
