#!/usr/bin/env python
"""Profile one D-FINE training step with torch.profiler: forward and backward
by module, loss phases (matching, GO-LSD union, denoising, each loss term,
Python overhead), optimizer, top ATen ops.  Prints Markdown tables.

Example::

    python tools/benchmark/profile_step.py          # N, batch 4, 640
    python tools/benchmark/profile_step.py \\
        --config configs/dfine/dfine_hgnetv2_s_coco.py
    python tools/benchmark/profile_step.py --size 64 --batch-size 1 --depth 2 \
        --cfg-options model.num_queries=10 model.dn_cfg.num_denoising=10
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        '--config',
        default=osp.join(ROOT, 'configs', 'dfine', 'dfine_hgnetv2_n_coco.py'))
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--size', type=int, default=640, help='square input size')
    p.add_argument('--gt', type=int, default=7, help='GT boxes per image')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--iters', type=int, default=1, help='profiled iterations')
    p.add_argument(
        '--depth',
        type=int,
        default=3,
        help='module name depth of the forward scopes')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', help='also write the tables to this Markdown file')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config fields, e.g. model.num_queries=10')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')
    from dfine_mmdet.benchmark.profiling import (build_training, format_report,
                                                 profile_train_step)
    model, optim, data = build_training(args.config, args.batch_size,
                                        args.size, args.gt, args.seed,
                                        args.cfg_options)
    res = profile_train_step(model, optim, data, args.warmup, args.iters,
                             args.depth)
    name = osp.splitext(osp.basename(args.config))[0]
    title = (
        f'{name}, batch {args.batch_size}, {args.size}x{args.size}, '
        f'{args.gt} GT/image, {torch.get_num_threads()} thread(s), '
        f'{args.iters} profiled iteration(s) after {args.warmup} warm-up; '
        f'profiled wall {sum(res["profiled_wall_s"]) / args.iters:.3f} '
        f's/iter, loss {res["loss"]:.3f}')
    text = format_report(res, title)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')


if __name__ == '__main__':
    main()
