"""D-FINE parameter counts and CPU latency on every inference path, in one run.

Usage::

    python tools/benchmark/latency.py               # N and S, 640x640
    python tools/benchmark/latency.py --variants n --threads 2 --runs 20
    python tools/benchmark/latency.py --variants s \\
        --official-onnx s=work_dirs/official/dfine_s.onnx  # official file
    python tools/benchmark/latency.py --params-only

Two tables are printed:

* parameter counts of N/S/M/L/X built from this repo's configs next to the
  official counts (spec section 1.1, measured on the official modules), with a
  match flag;
* per variant, the latency of every inference path of
  :mod:`dfine_mmdet.benchmark.inference_paths` (PyTorch eager, eager after
  ``switch_to_deploy``, this plugin's MMDeploy end-to-end graph and the
  official exporter's graph, each in ONNX Runtime and, when installed,
  OpenVINO) on the same random weights and input.

Timing (:mod:`dfine_mmdet.benchmark.timing`): ``--rounds`` rounds; in each
round every path runs ``--runs`` timed calls after ``--warmup`` calls, so load
changes affect all paths alike. Printed per path: median and p10-p90 of all
timed calls, the ratio to the fastest path and the speed-up over
``torch-eager``. Export time is not counted. Weights are random (no checkpoint
is needed for timing); the numbers depend on the machine and on other load
(the load average is printed).
"""
import argparse
import json
import os
import sys
import tempfile

import torch

from dfine_mmdet.benchmark.inference_paths import (build_dfine, build_paths,
                                                   format_path_table,
                                                   path_rows)
from dfine_mmdet.benchmark.models import count_params
from dfine_mmdet.benchmark.timing import time_interleaved

#: official parameter counts (spec section 1.1, official modules, COCO)
OFFICIAL_PARAMS = {
    'n': 3_782_693,
    's': 10_321_877,
    'm': 19_590_064,
    'l': 31_244_152,
    'x': 62_621_560,
}

#: runtime names of ``--backends`` -> what :func:`build_paths` skips
BACKENDS = ('torch', 'onnxruntime', 'openvino')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--variants',
        nargs='+',
        default=['n', 's'],
        help='variants to time (default: n s)')
    parser.add_argument(
        '--backends',
        nargs='+',
        default=list(BACKENDS),
        choices=list(BACKENDS) + ['torch-eager'],
        help='runtimes to time (default: all installed)')
    parser.add_argument('--size', type=int, default=640)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--runs', type=int, default=5, help='timed calls per path per round')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='threads of every runtime (default: '
        'torch.get_num_threads())')
    parser.add_argument(
        '--official-onnx',
        nargs='*',
        default=[],
        metavar='VARIANT=PATH',
        help='time these files (written by the official exporter) as the '
        'official paths instead of the rebuilt graph')
    parser.add_argument(
        '--skip',
        nargs='*',
        default=[],
        help='path names to leave out (or a runtime name)')
    parser.add_argument(
        '--out-json',
        default=None,
        help='write every timed call and the tables here')
    parser.add_argument('--params-only', action='store_true')
    return parser.parse_args(argv)


def param_table() -> bool:
    """Print the parameter counts; returns whether all match."""
    print('parameter counts (configs/dfine/dfine_hgnetv2_*_coco.py)')
    print(f'{"variant":8s}{"ours":>14s}{"official":>14s}  match')
    all_match = True
    for v in 'nsmlx':
        n = count_params(build_dfine(v))
        ok = n == OFFICIAL_PARAMS[v]
        all_match &= ok
        print(f'{v.upper():8s}{n:>14,d}{OFFICIAL_PARAMS[v]:>14,d}  '
              f'{"yes" if ok else "NO"}')
    return all_match


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    official = {}
    for item in args.official_onnx:
        variant, sep, path = item.partition('=')
        if not sep or not os.path.isfile(path):
            raise SystemExit(f'--official-onnx {item!r}: expected '
                             'VARIANT=PATH of an existing file')
        official[variant] = path
    all_match = param_table()
    if args.params_only:
        return 0 if all_match else 1

    backends = {'torch' if b == 'torch-eager' else b for b in args.backends}
    skip = list(args.skip) + [b for b in BACKENDS if b not in backends]
    load = os.getloadavg() if hasattr(os, 'getloadavg') else None
    print(f'\nlatency: input {args.batch}x3x{args.size}x{args.size}, '
          f'{threads} threads, {args.rounds} rounds x {args.runs} runs '
          f'(+{args.warmup} warm-up) per path, load average {load}')
    report = dict(
        size=args.size,
        batch=args.batch,
        threads=threads,
        load_before=load,
        variants={})
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            paths = build_paths(variant, args.size, threads, tmp,
                                official.get(variant), skip, args.batch)
            times = time_interleaved(paths, args.rounds, args.warmup,
                                     args.runs)
            rows = path_rows(times)
            print(format_path_table(variant, rows), flush=True)
            report['variants'][variant] = dict(rows=rows, times_s=times)
    if args.out_json:
        with open(args.out_json, 'w') as f:
            json.dump(report, f, indent=1)
    return 0 if all_match else 1


if __name__ == '__main__':
    sys.exit(main())
