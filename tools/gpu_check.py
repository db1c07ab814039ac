#!/usr/bin/env python
"""One-command accelerator check of D-FINE: training steps in fp32 / fp16 /
bf16 autocast (finite fp32 losses, iterations/s), fp16 / bf16 inference
agreement with fp32 on the parity input, eager and compiled latency at batch
1 and 32.  Prints one Markdown table; exit code 1 if a check fails.
Installs and downloads nothing.

Example::

    python tools/gpu_check.py                  # cuda, N and S, ~5 min on H100
    python tools/gpu_check.py --device cpu --tiny    # the tests' CPU smoke run
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: model settings of ``--tiny`` (64x64 inputs: 20 tokens, 10 queries)
TINY_OPTIONS = dict(
    model=dict(
        num_queries=10,
        eval_spatial_size=(64, 64),
        dn_cfg=dict(num_denoising=10)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda')
    p.add_argument('--variants', nargs='+', default=['n', 's'])
    p.add_argument('--train-batch', type=int, default=8)
    p.add_argument('--train-iters', type=int, default=10)
    p.add_argument('--size', type=int, default=640)
    p.add_argument('--latency-batches', type=int, nargs='+', default=[1, 32])
    p.add_argument('--latency-iters', type=int, default=20)
    p.add_argument(
        '--precisions',
        nargs='+',
        default=['fp32', 'fp16', 'bf16'],
        choices=['fp32', 'fp16', 'bf16'])
    p.add_argument(
        '--no-compile',
        action='store_true',
        help='skip the torch.compile latency rows')
    p.add_argument(
        '--parity-dir',
        default=osp.join(ROOT, '..', 'shared', 'parity'),
        help="fixtures for the agreement check ('none': random weights)")
    p.add_argument(
        '--budget',
        type=float,
        default=420.0,
        help='seconds; checks that would start later are SKIP rows')
    p.add_argument(
        '--tiny',
        action='store_true',
        help='64x64, batch 1, 10 queries, 1 iteration (CPU smoke test)')
    p.add_argument(
        '--threads',
        type=int,
        default=0,
        help='torch.set_num_threads (0: leave as is)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')
    from dfine_mmdet.benchmark.gpu_check import format_table, run_checks
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit('gpu_check: --device cuda but torch.cuda.is_available() is '
                 'False (use --device cpu for the CPU smoke run)')
    opts, kw = None, {}
    if args.tiny:
        opts = TINY_OPTIONS
        kw = dict(
            train_batch=1,
            train_size=64,
            train_iters=1,
            latency_size=64,
            latency_iters=1,
            latency_batches=args.latency_batches
            if '--latency-batches' in (argv or sys.argv) else [1, 2])
        args.parity_dir = 'none'
    else:
        kw = dict(
            train_batch=args.train_batch,
            train_size=args.size,
            train_iters=args.train_iters,
            latency_size=args.size,
            latency_iters=args.latency_iters,
            latency_batches=args.latency_batches)
    parity = None if args.parity_dir == 'none' else osp.abspath(
        args.parity_dir)
    rows = run_checks(
        args.variants,
        lambda v: osp.join(ROOT, 'configs', 'dfine',
                           f'dfine_hgnetv2_{v}_coco.py'),
        device=args.device,
        precisions=args.precisions,
        compile_model=not args.no_compile,
        parity_dir=parity,
        budget_s=args.budget,
        cfg_options=opts,
        **kw)
    name = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith('cuda') else args.device)
    print(
        format_table(
            rows, f'D-FINE device check on {name}, torch '
            f'{torch.__version__}'))
    if any(r['status'] == 'FAIL' for r in rows):
        sys.exit(1)


if __name__ == '__main__':
    main()
