#!/usr/bin/env python
"""Plain DINO vs DINO + FDR / GO-LSD without / with the pre head, toy set.

Trains ``configs/dino_fdr/toy/dino-4scale_r18_toy.py`` (plain DINO),
``configs/dino_fdr/toy/dino-4scale_r18_fdr_toy.py`` (the same model and
recipe with D-FINE's FDR decoder refinement, FGL + DDF and the GO-LSD union;
FDR reference = the two-stage proposal) and
``configs/dino_fdr/toy/dino-4scale_r18_fdr_pre_toy.py`` (the same with
``pre_refine=True``: D-FINE's layer-0 pre head makes the FDR reference)
for the same number of iterations with the same seed(s) and data order on
CPU, evaluates each on the toy val split with ``CocoMetric`` and prints one
line per model (bbox mAP, mAP@0.5, median s/iter) and the ratios FDR+pre /
FDR, FDR+pre / plain and FDR / plain.  The models run one after the other,
so on a shared machine the s/iter ratios also reflect load changes between
the runs.  With
several ``--seeds`` it prints every run and the means.  The toy set is
written with ``tools/make_toy_dataset.py`` when ``--data`` holds none.

This is a learning comparison on synthetic data at toy size from scratch,
not a COCO result; short runs are noisy (one seed is one sample).

The LAST line is ``ratio FDR/plain: mAP <r>  mAP@0.5 <r>  s/iter <r>``.

Measured (2026-12-04, shared 2-core CPU, 1 thread, ``--iters 300``, seeds
0 and 1): DINO bbox mAP 0.256 / 0.262 (mAP@0.5 0.474 / 0.475), DINO +
FDR/GO-LSD 0.226 / 0.193 (0.440 / 0.377), DINO + FDR + pre 0.179 / 0.206
(0.394 / 0.404); ratio FDR/plain mAP 0.81, FDR+pre/FDR mAP 0.92 (worse on
seed 0, better on seed 1).  Details in README.md, "Mix and match".

Examples::

    python tools/experiments/dino_fdr_toy.py --iters 300
    python tools/experiments/dino_fdr_toy.py --iters 300 --seeds 0 1
"""
import argparse
import os
import os.path as osp
import tempfile
import time

from dfine_mmdet.benchmark.toy_training import build_cfg, ensure_toy_data

PROJECT_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_DIR = osp.join(PROJECT_ROOT, 'configs', 'dino_fdr', 'toy')
CONFIGS = {
    'DINO': osp.join(TOY_DIR, 'dino-4scale_r18_toy.py'),
    'DINO+FDR/GO-LSD': osp.join(TOY_DIR, 'dino-4scale_r18_fdr_toy.py'),
    'DINO+FDR+pre': osp.join(TOY_DIR, 'dino-4scale_r18_fdr_pre_toy.py'),
}


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=300,
                        help='training iterations of each model (default '
                        '300)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='seeds; each model is trained once per seed')
    parser.add_argument('--data', default=None,
                        help='toy dataset dir (written when missing; default '
                        '<work-dir>/toy_data)')
    parser.add_argument('--work-dir', default=None,
                        help='work dir (default: a temporary directory)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch.set_num_threads (default 1)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        default={}, help='overrides applied to BOTH configs '
                        '(key=value, as in tools/train.py)')
    return parser.parse_args(argv)


def train_and_eval(config, seed, iters, data_dir, work_dir, cfg_options):
    """Train ``config`` for ``iters`` iterations, evaluate once.

    Returns:
        dict: ``mAP``, ``mAP50``, ``s_per_iter``, ``first_loss``,
        ``last_loss`` (means over the first / last 10% of iterations).
    """
    import torch
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class Timer(Hook):
        """Total loss and wall time of every iteration."""
        priority = 'LOWEST'

        def __init__(self):
            self.losses, self.times, self.tic = [], [], None

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self.tic = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            self.times.append(time.perf_counter() - self.tic)
            self.losses.append(float(outputs['loss'].detach()))

    args = argparse.Namespace(config=config, cfg_options=cfg_options,
                              iters=iters, seed=seed)
    cfg = build_cfg(args, data_dir, work_dir)
    runner = Runner.from_cfg(cfg)
    timer = Timer()
    runner.register_hook(timer)
    runner.train()
    metrics = runner.val_loop.run()
    n = len(timer.losses)
    k = max(1, n // 10)
    if not all(map(torch.isfinite, torch.tensor(timer.losses))):
        raise RuntimeError(f'{config}: non-finite training loss')
    return dict(
        mAP=metrics.get('coco/bbox_mAP', 0.0),
        mAP50=metrics.get('coco/bbox_mAP_50', 0.0),
        # median: robust to the first (warm-up) iterations and load spikes
        s_per_iter=float(torch.tensor(timer.times).median()),
        first_loss=sum(timer.losses[:k]) / k,
        last_loss=sum(timer.losses[-k:]) / k)


def _ratio(a, b):
    return a / b if b else float('nan')


def main(argv=None):
    args = parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix='dino_fdr_toy_')
    os.makedirs(work_dir, exist_ok=True)
    data_dir = ensure_toy_data(args.data or osp.join(work_dir, 'toy_data'),
                               args.seeds[0])
    print(f'dino_fdr_toy: {args.iters} iterations per model, seeds '
          f'{args.seeds}, threads {torch.get_num_threads()}, data {data_dir}',
          flush=True)
    results = {name: [] for name in CONFIGS}
    for seed in args.seeds:
        for name, config in CONFIGS.items():
            run_dir = osp.join(work_dir, f'{name.replace("/", "_")}_s{seed}')
            r = train_and_eval(config, seed, args.iters, data_dir, run_dir,
                               args.cfg_options)
            results[name].append(r)
            print(f'  seed {seed} {name:16s} bbox mAP {r["mAP"]:.3f}  '
                  f'mAP@0.5 {r["mAP50"]:.3f}  {r["s_per_iter"]:.2f} s/iter  '
                  f'loss {r["first_loss"]:.2f} -> {r["last_loss"]:.2f}',
                  flush=True)
    means = {}
    for name, runs in results.items():
        means[name] = {
            k: sum(r[k] for r in runs) / len(runs)
            for k in ('mAP', 'mAP50', 's_per_iter')
        }
        m = means[name]
        print(f'{name:16s} bbox mAP: {m["mAP"]:.3f}  mAP@0.5: '
              f'{m["mAP50"]:.3f}  s/iter: {m["s_per_iter"]:.2f}  '
              f'({args.iters} iterations, mean of {len(runs)} seed(s))')
    plain, fdr = means['DINO'], means['DINO+FDR/GO-LSD']
    pre = means['DINO+FDR+pre']
    print(f'ratio FDR+pre/FDR: mAP {_ratio(pre["mAP"], fdr["mAP"]):.2f}  '
          f'mAP@0.5 {_ratio(pre["mAP50"], fdr["mAP50"]):.2f}  '
          f's/iter {_ratio(pre["s_per_iter"], fdr["s_per_iter"]):.2f}')
    print(f'ratio FDR+pre/plain: mAP {_ratio(pre["mAP"], plain["mAP"]):.2f}  '
          f'mAP@0.5 {_ratio(pre["mAP50"], plain["mAP50"]):.2f}  '
          f's/iter {_ratio(pre["s_per_iter"], plain["s_per_iter"]):.2f}')
    print(f'ratio FDR/plain: mAP {_ratio(fdr["mAP"], plain["mAP"]):.2f}  '
          f'mAP@0.5 {_ratio(fdr["mAP50"], plain["mAP50"]):.2f}  '
          f's/iter {_ratio(fdr["s_per_iter"], plain["s_per_iter"]):.2f}',
          flush=True)
    return means


if __name__ == '__main__':
    main()
