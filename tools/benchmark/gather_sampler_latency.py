"""CPU latency of the gather-sampler graph (``configs/deploy/*_gather.py``)
against the default GridSample graph, side by side in one run.

Usage::

    python tools/benchmark/gather_sampler_latency.py               # N and S
    python tools/benchmark/gather_sampler_latency.py --variants n --threads 2

For each variant, the same random-weight D-FINE (as
``tools/benchmark/latency.py``) is exported twice with MMDeploy: with
``configs/deploy/detection_onnxruntime_static-640x640.py`` (deformable
attention as ONNX ``GridSample``) and with its ``_gather`` twin (``Gather``
and index arithmetic, :func:`dfine_mmdet.models.layers.ms_deform_attn.
grid_sample_gather`). Both graphs run in ONNX Runtime (``ORT_ENABLE_ALL``)
and, when installed, OpenVINO (FP32, LATENCY hint) on the same
``1x3xSxS`` input with the same thread count, interleaved in rounds (see
``dfine_mmdet.benchmark.timing.time_interleaved``) so that load changes affect
all paths alike.

Printed per variant: the node counts of both graphs, how far their
detections are apart (same model: paired by label and score, boxes within
~1e-4 px), the latency table and
``gather / grid_sample`` per runtime, with the load average before and
after. Export time is not counted.
"""
import argparse
import copy
import os
import os.path as osp
import sys
import tempfile

import numpy as np
import torch

from dfine_mmdet.benchmark.inference_paths import (build_dfine,
                                                   format_path_table,
                                                   have_openvino,
                                                   openvino_runner, ort_runner,
                                                   path_rows)
from dfine_mmdet.benchmark.timing import time_interleaved

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEPLOY_DIR = osp.join(REPO_ROOT, 'configs', 'deploy')
DEPLOY_CFGS = {
    'grid_sample': 'detection_onnxruntime_static-640x640.py',
    'gather': 'detection_onnxruntime_static-640x640_gather.py',
}


def export_graph(model, inputs, deploy_file: str, prefix: str) -> str:
    """MMDeploy end-to-end graph of ``model`` at the shape of ``inputs``
    with the deploy config ``deploy_file`` (its ``deform_attn_sampler`` key
    is honoured by the export rewriters); returns the ``.onnx`` path."""
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import load_config
    from mmdet.structures import DetDataSample

    import dfine_mmdet.deploy  # noqa: F401  (rewriters and symbolics)
    deploy_cfg = load_config(osp.join(DEPLOY_DIR, deploy_file))[0]
    batch, _, h, w = inputs.shape
    deploy_cfg.onnx_config.input_shape = (w, h)
    meta = dict(
        img_shape=(h, w),
        batch_input_shape=(h, w),
        ori_shape=(h, w),
        scale_factor=(1.0, 1.0))
    export(
        copy.deepcopy(model),
        inputs,
        prefix,
        backend='onnxruntime',
        input_metas=dict(
            data_samples=[DetDataSample(metainfo=meta) for _ in range(batch)],
            mode='predict'),
        context_info=dict(deploy_cfg=deploy_cfg),
        input_names=['input'],
        output_names=['dets', 'labels'],
        opset_version=deploy_cfg.onnx_config.opset_version,
        keep_initializers_as_inputs=False)
    return prefix + '.onnx'


def run_variant(variant: str, args, tmp: str) -> dict:
    from dfine_mmdet.deploy.graph_checks import op_type_counts
    from dfine_mmdet.deploy.verify import match_detections
    torch.manual_seed(0)
    inputs = torch.rand(1, 3, args.size, args.size)
    model = build_dfine(variant)
    feed = {'input': inputs.numpy()}
    graphs, paths = {}, {}
    for sampler, cfg in DEPLOY_CFGS.items():
        graphs[sampler] = export_graph(model, inputs, cfg,
                                       osp.join(tmp, f'{variant}_{sampler}'))
        counts = op_type_counts(graphs[sampler])
        print(
            f'D-FINE-{variant.upper()} {sampler} graph: '
            f'{sum(counts.values())} nodes, GridSample x'
            f'{counts.get("GridSample", 0)}, Gather x'
            f'{counts.get("Gather", 0)}',
            flush=True)
    for sampler, onnx_file in graphs.items():
        paths[f'ort-{sampler}'] = ort_runner(onnx_file, feed, args.threads)
    if have_openvino() and 'openvino' in args.backends:
        for sampler, onnx_file in graphs.items():
            paths[f'openvino-{sampler}'] = openvino_runner(
                onnx_file, feed, args.threads)
    if 'ort' not in args.backends:
        paths = {k: v for k, v in paths.items() if not k.startswith('ort-')}
    # same model, two samplers: the detections must agree (paired by
    # label and score, as tools/deploy.py --check does; the random weights
    # give many equal scores, so positions alone would not do)
    outs = {k: fn() for k, fn in paths.items()}
    for rt in sorted({k.split('-')[0] for k in paths}):
        a, b = ([
            torch.from_numpy(np.asarray(t))
            for t in (o.values() if hasattr(o, 'values') else o)
        ] for o in (outs[f'{rt}-grid_sample'], outs[f'{rt}-gather']))
        r = match_detections(a[0][0, :, :4], a[0][0, :, 4], a[1][0],
                             b[0][0, :, :4], b[0][0, :, 4], b[1][0])
        print(f'{rt}: gather vs grid_sample detections: {r["unmatched"]} '
              f'unmatched, max box diff {r["max_box_diff"]:.2e} px, max '
              f'score diff {r["max_score_diff"]:.2e}')
    load = os.getloadavg()[0]
    times = time_interleaved(paths, args.rounds, args.warmup, args.runs)
    rows = path_rows(times)
    print(format_path_table(variant, rows))
    med = {r['path']: r['median_ms'] for r in rows}
    ratios = {}
    for rt in sorted({k.split('-')[0] for k in med}):
        ratios[rt] = med[f'{rt}-gather'] / med[f'{rt}-grid_sample']
        print(f'{rt}: gather / grid_sample = {ratios[rt]:.2f}x')
    print(
        f'load average before {load:.2f}, after {os.getloadavg()[0]:.2f}',
        flush=True)
    return dict(rows=rows, ratios=ratios)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variants', nargs='+', default=['n', 's'])
    parser.add_argument('--size', type=int, default=640)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument(
        '--backends',
        nargs='+',
        default=['ort', 'openvino'],
        choices=['ort', 'openvino'])
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=3)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    print(
        f'{args.threads} thread(s), {args.size}x{args.size}, '
        f'{args.rounds} rounds x {args.runs} runs (+{args.warmup} warm-up) '
        f'per path, load average {os.getloadavg()}',
        flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            run_variant(variant, args, tmp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
