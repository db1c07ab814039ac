"""D-FINE parameter counts and CPU latency.

Usage::

    python tools/benchmark/latency.py        # N and S, 640x640, batch 1
    python tools/benchmark/latency.py --variants n s m --runs 20 --threads 2
    python tools/benchmark/latency.py --params-only

Two tables are printed:

* parameter counts of N/S/M/L/X built from this repo's configs next to the
  official counts (spec section 1.1, measured on the official modules), with a
  match flag;
* latency (median over ``--runs`` after ``--warmup`` runs) on a random
  ``1x3x640x640`` input for each backend: PyTorch eager ``mode='tensor'``
  forwards and ONNX Runtime (CPU) on the MMDeploy end-to-end graph, with
  their ratio ``eager/ort`` (> 1: ONNX Runtime is faster).

Backends are plain functions ``bench_<name>(model, inputs, args) -> list of
seconds``, registered in :data:`BACKENDS`; adding a column (e.g. ONNX Runtime)
means adding one function and one entry.  Weights are random (no checkpoint is
needed for timing); the numbers depend on the machine and on other load.
"""
import argparse
import os.path as osp
import statistics
import sys
from typing import Callable, Dict, List

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:  # allow running from a source checkout
    sys.path.insert(0, REPO_ROOT)
_HERE = osp.dirname(osp.abspath(__file__))
if _HERE not in sys.path:  # cpu_latency.py / compare.py beside this file
    sys.path.insert(0, _HERE)
from compare import time_runs  # noqa: E402  (light: no torch at import)

#: official parameter counts (spec section 1.1, official modules, COCO)
OFFICIAL_PARAMS = {
    'n': 3_782_693,
    's': 10_321_877,
    'm': 19_590_064,
    'l': 31_244_152,
    'x': 62_621_560,
}


def config_path(variant: str) -> str:
    return osp.join(REPO_ROOT, 'configs', 'dfine',
                    f'dfine_hgnetv2_{variant}_coco.py')


def build_model(variant: str) -> torch.nn.Module:
    """Eval-mode model of ``dfine_hgnetv2_{variant}_coco.py`` (random)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(config_path(variant))
    return MODELS.build(cfg.model).eval()


def count_params(model: torch.nn.Module) -> int:
    """Number of parameter elements (as ``sum(p.numel())`` officially).

    The official model registers ``up`` and ``reg_scale`` as (non-trainable)
    Parameters, 2 elements that are buffers here; they are added back so
    the two counts are comparable.
    """
    n = sum(p.numel() for p in model.parameters())
    n += model.decoder.up.numel() + model.decoder.reg_scale.numel()
    return n


def bench_torch_eager(model, inputs, args) -> List[float]:
    """PyTorch eager, ``model(inputs, mode='tensor')`` under no_grad."""
    with torch.no_grad():
        return time_runs(lambda: model(inputs, mode='tensor'), args.warmup,
                         args.runs)


def bench_onnxruntime(model, inputs, args) -> List[float]:
    """ONNX Runtime (CPU execution provider), same thread count as torch.

    The graph is the MMDeploy end-to-end export
    (``configs/deploy/detection_onnxruntime_static-640x640.py`` at the
    benchmark's input shape, D-FINE rewriters from ``dfine_mmdet.deploy``), so
    it includes the top-k post-processing to ``dets`` / ``labels`` that
    ``mode='tensor'`` leaves out. Export time is not counted.
    """
    import tempfile

    # the export and session settings are cpu_latency.py's (one copy)
    from cpu_latency import export_plugin_graph, ort_runner
    with tempfile.TemporaryDirectory() as tmp:
        run = ort_runner(
            export_plugin_graph(model, inputs, osp.join(tmp, 'end2end')),
            {'input': inputs.numpy()}, torch.get_num_threads())
    return time_runs(run, args.warmup, args.runs)


#: backend name -> benchmark function
BACKENDS: Dict[str, Callable] = {
    'torch-eager': bench_torch_eager,
    'onnxruntime': bench_onnxruntime,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variants', nargs='+', default=['n', 's'],
                        help='variants to time (default: n s)')
    parser.add_argument('--backends', nargs='+', default=list(BACKENDS),
                        choices=list(BACKENDS))
    parser.add_argument('--size', type=int, default=640)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: unchanged)')
    parser.add_argument('--params-only', action='store_true')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print('parameter counts (configs/dfine/dfine_hgnetv2_*_coco.py)')
    print(f'{"variant":8s}{"ours":>14s}{"official":>14s}  match')
    all_match = True
    for v in 'nsmlx':
        model = build_model(v)
        n = count_params(model)
        ok = n == OFFICIAL_PARAMS[v]
        all_match &= ok
        print(f'{v.upper():8s}{n:>14,d}{OFFICIAL_PARAMS[v]:>14,d}  '
              f'{"yes" if ok else "NO"}')
        del model
    if args.params_only:
        return 0 if all_match else 1

    print(f'\nlatency: input {args.batch}x3x{args.size}x{args.size}, '
          f'{torch.get_num_threads()} threads, median of {args.runs} runs '
          f'after {args.warmup} warm-up runs')
    header = f'{"variant":8s}' + ''.join(f'{b:>16s}' for b in args.backends)
    with_ratio = {'torch-eager', 'onnxruntime'} <= set(args.backends)
    if with_ratio:
        header += f'{"eager/ort":>12s}'
    print(header + '   (ms)')
    inputs = torch.rand(args.batch, 3, args.size, args.size)
    for v in args.variants:
        model = build_model(v)
        row = f'{v.upper():8s}'
        medians = {}
        for name in args.backends:
            times = BACKENDS[name](model, inputs, args)
            medians[name] = statistics.median(times)
            row += f'{1000 * medians[name]:>16.1f}'
        if with_ratio:
            ratio = medians['torch-eager'] / medians['onnxruntime']
            row += f'{ratio:>11.2f}x'
        print(row)
        del model
    return 0 if all_match else 1


if __name__ == '__main__':
    sys.exit(main())
