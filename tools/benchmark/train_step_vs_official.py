#!/usr/bin/env python
"""Training-step time of this plugin against the official D-FINE code, side
by side: the two timers run alternately in separate processes for
``--rounds`` rounds; prints official/ours per round and the median (> 1:
ours is faster).

Needs a checkout of the official repository (Peterande/D-FINE at 4a1f73a,
``--dfine-root``) and its timer (``--official-timer``, default
``../shared/tools/train_step_official.py`` next to the project).

Example::

    python tools/benchmark/train_step_vs_official.py \\
        --dfine-root /tmp/D-FINE --variant n --rounds 3
"""
import argparse
import os
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        '--dfine-root',
        required=True,
        help='official D-FINE checkout (commit 4a1f73a)')
    p.add_argument(
        '--official-timer',
        default=osp.join(ROOT, '..', 'shared', 'tools',
                         'train_step_official.py'))
    p.add_argument('--variant', default='n', choices='nsmlx')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--iters', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--gt', type=int, default=7)
    p.add_argument('--threads', type=int, default=1)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from dfine_mmdet.benchmark.official_compare import compare, python_cmd
    common = [
        '--iters', args.iters, '--warmup', args.warmup, '--batch-size',
        args.batch_size, '--gt', args.gt, '--threads', args.threads
    ]
    ours = python_cmd(
        osp.join(ROOT, 'tools', 'experiments', 'train_step.py'), '--config',
        osp.join(ROOT, 'configs', 'dfine',
                 f'dfine_hgnetv2_{args.variant}_coco.py'), *common)
    official = python_cmd(
        osp.abspath(args.official_timer), '--dfine-root',
        osp.abspath(args.dfine_root), '--variant', args.variant, *common)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(
        f'D-FINE-{args.variant.upper()} train step, batch {args.batch_size}, '
        f'640x640, {args.gt} GT/image, {args.threads} thread(s), '
        f'{args.rounds} rounds x {args.iters} iterations (+{args.warmup} '
        f'warm-up), load average {os.getloadavg()[0]:.1f} at start',
        flush=True)
    res = compare(
        ours, official, args.rounds, env, log=lambda s: print(s, flush=True))
    print(f'D-FINE-{args.variant.upper()}: ours '
          f'{", ".join(f"{x:.3f}" for x in res["ours"])} s/iter, official '
          f'{", ".join(f"{x:.3f}" for x in res["official"])} s/iter; '
          f'official/ours median {res["median_ratio"]:.2f}x (rounds '
          f'{", ".join(f"{x:.2f}" for x in res["ratios"])}; load '
          f'{", ".join(f"{x:.1f}" for x in res["load"])})')
    print(f'D-FINE-{args.variant.upper()}: whole-process CPU seconds ours '
          f'{", ".join(f"{x:.0f}" for x in res["ours_cpu"])}, official '
          f'{", ".join(f"{x:.0f}" for x in res["official_cpu"])}; '
          f'official/ours median {res["median_cpu_ratio"]:.2f}x')


if __name__ == '__main__':
    main()
