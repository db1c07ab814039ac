#!/usr/bin/env python
"""Eager vs torch.compile: D-FINE training step (compiled as MMEngine's
``compile`` field does: the bound ``train_step``) and network inference
latency, timed alternately in one run.

Example::

    python tools/benchmark/compile_speed.py \\
        --config configs/dfine/dfine_hgnetv2_n_coco.py
    python tools/benchmark/compile_speed.py --size 64 --batch-size 1 \\
        --iters 1 \\
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
    p.add_argument('--batch-size', type=int, default=4, help='training batch')
    p.add_argument('--size', type=int, default=640)
    p.add_argument('--gt', type=int, default=7)
    p.add_argument('--iters', type=int, default=3)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--skip-train', action='store_true')
    p.add_argument('--skip-infer', action='store_true')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')
    from dfine_mmdet.benchmark.compile_speed import (compare_inference,
                                                     compare_train_step)
    name = osp.splitext(osp.basename(args.config))[0]
    print(
        f'{name}, {args.size}x{args.size}, {torch.get_num_threads()} '
        f'thread(s), torch {torch.__version__}',
        flush=True)
    if not args.skip_infer:
        r = compare_inference(
            args.config,
            1,
            args.size,
            args.iters,
            cfg_options=args.cfg_options)
        print(
            f'inference batch 1: eager {r["eager_s"] * 1e3:.1f} ms, '
            f'compiled {r["compiled_s"] * 1e3:.1f} ms -> '
            f'{r["speedup"]:.2f}x (compile {r["compile_s"]:.0f} s; vs eager '
            f'score {r["score_diff"]:.1e}, box {r["box_diff"]:.1e}, same '
            f'queries {r["same_queries"]:.2f})',
            flush=True)
    if not args.skip_train:
        r = compare_train_step(
            args.config,
            args.batch_size,
            args.size,
            args.gt,
            args.iters,
            cfg_options=args.cfg_options)
        print(
            f'train step batch {args.batch_size}: eager {r["eager_s"]:.3f} '
            f's, compiled {r["compiled_s"]:.3f} s -> {r["speedup"]:.2f}x '
            f'(compile {r["compile_s"]:.0f} s; first loss eager '
            f'{r["loss_eager"]:.4f}, compiled {r["loss_compiled"]:.4f})',
            flush=True)


if __name__ == '__main__':
    main()
