"""CPU latency of D-FINE on every inference path, side by side in one run.

Usage::

    python tools/benchmark/cpu_latency.py                      # N and S, 640
    python tools/benchmark/cpu_latency.py --variants n --threads 2 --runs 20
    python tools/benchmark/cpu_latency.py --variants s \
        --official-onnx s=work_dirs/official/dfine_s.onnx       # the official tool's file

Paths (same random weights, same ``1x3xHxW`` input, same thread count):

* ``torch-eager``: ``model(x, mode='tensor')`` under ``no_grad``;
* ``torch-eager-fused``: the same after ``switch_to_deploy()`` of every
  block that has one (Conv+BN folded, RepVGG branches merged, as the official
  ``model.deploy()`` does);
* ``plugin-ort`` / ``plugin-openvino``: this plugin's MMDeploy end-to-end
  graph (``configs/deploy/detection_onnxruntime_static-640x640.py`` at the
  benchmark's input shape; outputs ``dets`` / ``labels``) in ONNX Runtime
  (``ORT_ENABLE_ALL``) and in OpenVINO (FP32, LATENCY hint, the plugin's
  :mod:`dfine_mmdet.deploy.backends.openvino`);
* ``official-ort`` / ``official-openvino``: the graph that the official
  ``tools/deployment/export_onnx.py`` produces — ``model.deploy()``, inputs
  ``images`` and ``orig_target_sizes``, outputs ``labels`` / ``boxes`` /
  ``scores`` from the official post-processor, opset 16, constant folding,
  dynamic batch axis (spec section 8) — rebuilt here from the same weights by
  :class:`OfficialExportGraph` (the official code is not imported; its
  ``onnxsim`` pass is not applied, ORT's and OpenVINO's own graph
  optimisations run instead). ``--official-onnx VARIANT=PATH`` times a file
  written by the official tool instead.

Timing: ``--rounds`` rounds; in each round every path runs ``--runs`` timed
calls after ``--warmup`` calls, so load changes affect all paths alike.
Printed per path: median and p10–p90 of all timed calls, the ratio to the
fastest path, and the speed-up over ``torch-eager``. Export time is not
counted. Numbers depend on the machine and on other load (``uptime`` is
printed).
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

OFFICIAL_OPSET = 16  # tools/deployment/export_onnx.py of the official repo


def build_model(variant: str) -> nn.Module:
    """Eval-mode D-FINE of ``configs/dfine/dfine_hgnetv2_{variant}_coco.py``
    with random weights (no pretrained backbone is loaded)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'dfine',
                 f'dfine_hgnetv2_{variant}_coco.py'))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


def switch_to_deploy(model: nn.Module) -> int:
    """Call ``switch_to_deploy()`` on every submodule that has one; returns
    how many were converted."""
    blocks = [m for m in model.modules() if hasattr(m, 'switch_to_deploy')]
    for m in blocks:
        m.switch_to_deploy()
    return len(blocks)


class OfficialExportGraph(nn.Module):
    """The module the official exporter traces, on this plugin's model.

    ``forward(images [B, 3, H, W] in [0, 1], orig_target_sizes [B, 2] as
    (w, h))`` returns ``labels [B, K]`` (int64, contiguous class ids),
    ``boxes [B, K, 4]`` (xyxy in ``orig_target_sizes`` pixels) and
    ``scores [B, K]``, K = 300: the official ``DFINEPostProcessor`` in deploy
    mode (sigmoid over the last decoder layer's logits, top-K over
    queries x classes, no threshold, no NMS). Only the last layer's outputs
    are used, so ONNX export drops the other layers' score heads as the
    official ``deploy()`` does.

    Args:
        model (nn.Module): an eval-mode ``DFINE`` (preferably after
            :func:`switch_to_deploy`).
        num_top_queries (int): K.
    """

    def __init__(self, model: nn.Module, num_top_queries: int = 300):
        super().__init__()
        self.model = model
        self.num_top_queries = num_top_queries

    def forward(self, images: torch.Tensor, orig_target_sizes: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls_scores, bbox_preds = self.model(images, mode='tensor')[:2]
        logits, boxes = cls_scores[-1], bbox_preds[-1]
        num_classes = logits.shape[-1]
        cx, cy, w, h = boxes.unbind(-1)
        xyxy = torch.stack(
            [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
        xyxy = xyxy * orig_target_sizes.repeat(1, 2).unsqueeze(1)
        scores, index = logits.sigmoid().flatten(1).topk(
            self.num_top_queries, dim=-1)
        labels = index % num_classes
        query = index // num_classes
        xyxy = xyxy.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
        return labels, xyxy, scores


def export_official_graph(model: nn.Module, size: int, path: str) -> str:
    """Export :class:`OfficialExportGraph` as the official tool does."""
    images = torch.rand(1, 3, size, size)
    sizes = torch.tensor([[size, size]])
    kwargs = dict(
        input_names=['images', 'orig_target_sizes'],
        output_names=['labels', 'boxes', 'scores'],
        dynamic_axes={
            'images': {
                0: 'N'
            },
            'orig_target_sizes': {
                0: 'N'
            }
        },
        opset_version=OFFICIAL_OPSET,
        do_constant_folding=True)
    import inspect
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        kwargs['dynamo'] = False  # the TorchScript exporter, as officially
    with torch.no_grad():
        torch.onnx.export(
            OfficialExportGraph(model).eval(), (images, sizes), path,
            **kwargs)
    return path


def export_plugin_graph(model: nn.Module, inputs: torch.Tensor,
                        prefix: str) -> str:
    """This plugin's MMDeploy end-to-end graph (``dets`` / ``labels``) at the
    shape of ``inputs``; returns the ``.onnx`` path. The export runs on a
    copy: MMDeploy's ``patch_model`` leaves the rewritten ``forward`` bound
    to the instance it exported."""
    import copy
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import load_config
    from mmdet.structures import DetDataSample

    import dfine_mmdet.deploy  # noqa: F401  (rewriters and symbolics)
    deploy_cfg = load_config(
        osp.join(REPO_ROOT, 'configs', 'deploy',
                 'detection_onnxruntime_static-640x640.py'))[0]
    batch, _, h, w = inputs.shape
    deploy_cfg.onnx_config.input_shape = (w, h)
    meta = dict(img_shape=(h, w), batch_input_shape=(h, w), ori_shape=(h, w),
                scale_factor=(1.0, 1.0))
    samples = [DetDataSample(metainfo=meta) for _ in range(batch)]
    export(
        copy.deepcopy(model),
        inputs,
        prefix,
        backend='onnxruntime',
        input_metas=dict(data_samples=samples, mode='predict'),
        context_info=dict(deploy_cfg=deploy_cfg),
        input_names=['input'],
        output_names=['dets', 'labels'],
        opset_version=deploy_cfg.onnx_config.opset_version,
        keep_initializers_as_inputs=False)
    return prefix + '.onnx'


def ort_runner(onnx_file: str, feed: Dict[str, np.ndarray],
               threads: int) -> Callable[[], object]:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        onnx_file, options, providers=['CPUExecutionProvider'])
    return lambda: session.run(None, feed)


def openvino_runner(onnx_file: str, feed: Dict[str, np.ndarray],
                    threads: int) -> Callable[[], object]:
    """OpenVINO on the CPU, FP32 (the plugin backend's compile settings),
    with the input shapes fixed to those of ``feed``."""
    import openvino as ov

    from dfine_mmdet.deploy.backends.openvino import DEFAULT_COMPILE_CONFIG
    core = ov.Core()
    model = core.read_model(onnx_file)
    model.reshape({name: list(a.shape) for name, a in feed.items()})
    props = dict(DEFAULT_COMPILE_CONFIG, INFERENCE_NUM_THREADS=threads)
    compiled = core.compile_model(model, 'CPU', props)
    request = compiled.create_infer_request()
    return lambda: request.infer(feed)


def torch_runner(model: nn.Module,
                 inputs: torch.Tensor) -> Callable[[], object]:

    def run():
        with torch.no_grad():
            return model(inputs, mode='tensor')

    return run


def have_openvino() -> bool:
    import importlib.util
    return importlib.util.find_spec('openvino') is not None


def build_paths(variant: str, size: int, threads: int, tmp: str,
                official_onnx: Optional[str], skip: List[str]
                ) -> Dict[str, Callable[[], object]]:
    """Every path of the module docstring for one variant (random weights),
    as ``name -> callable running one inference``."""
    torch.manual_seed(0)
    inputs = torch.rand(1, 3, size, size)
    model = build_model(variant)
    paths: Dict[str, Callable[[], object]] = {}
    paths['torch-eager'] = torch_runner(model, inputs)
    plugin_onnx = export_plugin_graph(model, inputs,
                                      osp.join(tmp, f'{variant}_plugin'))
    fused = build_model(variant)
    fused.load_state_dict(model.state_dict())
    n_fused = switch_to_deploy(fused)
    if n_fused:
        paths['torch-eager-fused'] = torch_runner(fused, inputs)
    if official_onnx is None:
        official_onnx = export_official_graph(
            fused, size, osp.join(tmp, f'{variant}_official.onnx'))
    plugin_feed = {'input': inputs.numpy()}
    official_feed = {
        'images': inputs.numpy(),
        'orig_target_sizes': np.array([[size, size]], dtype=np.int64)
    }
    paths['plugin-ort'] = ort_runner(plugin_onnx, plugin_feed, threads)
    paths['official-ort'] = ort_runner(official_onnx, official_feed, threads)
    if have_openvino() and 'openvino' not in skip:
        paths['plugin-openvino'] = openvino_runner(plugin_onnx, plugin_feed,
                                                   threads)
        paths['official-openvino'] = openvino_runner(official_onnx,
                                                     official_feed, threads)
    return {k: v for k, v in paths.items() if k not in skip}


def measure(paths: Dict[str, Callable[[], object]], rounds: int, warmup: int,
            runs: int) -> Dict[str, List[float]]:
    """Interleaved timing (see the module docstring); seconds per call."""
    times: Dict[str, List[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            for _ in range(warmup):
                fn()
            for _ in range(runs):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def summarise(times: Dict[str, List[float]]) -> List[Dict[str, float]]:
    """Rows with median / p10 / p90 in ms, ratio to the fastest median and
    speed-up over ``torch-eager``."""
    rows = []
    for name, ts in times.items():
        ms = sorted(1000 * t for t in ts)
        q = statistics.quantiles(ms, n=10, method='inclusive') \
            if len(ms) >= 2 else [ms[0]] * 9
        rows.append(
            dict(path=name, median_ms=statistics.median(ms), p10_ms=q[0],
                 p90_ms=q[-1], n=len(ms)))
    fastest = min(r['median_ms'] for r in rows)
    eager = next((r['median_ms'] for r in rows if r['path'] == 'torch-eager'),
                 None)
    for r in rows:
        r['x_fastest'] = r['median_ms'] / fastest
        r['speedup_vs_eager'] = eager / r['median_ms'] if eager else None
    return rows


def format_table(variant: str, rows: List[Dict[str, float]]) -> str:
    lines = [
        f'D-FINE-{variant.upper()}', '| path | median ms | p10–p90 ms | '
        'x fastest | speed-up vs eager |', '|---|---:|---:|---:|---:|'
    ]
    for r in rows:
        sp = f'{r["speedup_vs_eager"]:.2f}x' if r['speedup_vs_eager'] else '-'
        lines.append(f'| {r["path"]} | {r["median_ms"]:.1f} | '
                     f'{r["p10_ms"]:.1f}–{r["p90_ms"]:.1f} | '
                     f'{r["x_fastest"]:.2f} | {sp} |')
    plugin = [r for r in rows if r['path'].startswith('plugin-')]
    official = [r for r in rows if r['path'].startswith('official-')]
    if plugin and official:
        best_p = min(plugin, key=lambda r: r['median_ms'])
        best_o = min(official, key=lambda r: r['median_ms'])
        lines.append(f'best plugin path {best_p["path"]} / best official '
                     f'path {best_o["path"]}: '
                     f'{best_p["median_ms"] / best_o["median_ms"]:.2f}x')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variants', nargs='+', default=['n', 's'])
    parser.add_argument('--size', type=int, default=640)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--runs', type=int, default=5,
                        help='timed calls per path per round')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument(
        '--official-onnx',
        nargs='*',
        default=[],
        metavar='VARIANT=PATH',
        help='time these files (written by the official exporter) as the '
        'official paths instead of the rebuilt graph')
    parser.add_argument('--skip', nargs='*', default=[],
                        help='path names to leave out (or `openvino`)')
    parser.add_argument('--out-json', default=None,
                        help='write every timed call and the tables here')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    official = {}
    for item in args.official_onnx:
        variant, sep, path = item.partition('=')
        if not sep or not osp.isfile(path):
            raise SystemExit(f'--official-onnx {item!r}: expected '
                             'VARIANT=PATH of an existing file')
        official[variant] = path
    load = os.getloadavg() if hasattr(os, 'getloadavg') else None
    print(f'input 1x3x{args.size}x{args.size}, {args.threads} threads, '
          f'{args.rounds} rounds x {args.runs} runs (+{args.warmup} warm-up) '
          f'per path, load average {load}')
    report = dict(size=args.size, threads=args.threads, load_before=load,
                  variants={})
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            paths = build_paths(variant, args.size, args.threads, tmp,
                                official.get(variant), args.skip)
            times = measure(paths, args.rounds, args.warmup, args.runs)
            rows = summarise(times)
            print(format_table(variant, rows), flush=True)
            report['variants'][variant] = dict(rows=rows, times_s=times)
    if args.out_json:
        with open(args.out_json, 'w') as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
