"""The inference paths a latency measurement compares, built once.

Each path is a callable that runs one inference (same random weights, same
input, same thread count):

* ``torch-eager``: ``model(x, mode='tensor')`` under ``no_grad``;
* ``torch-eager-fused``: the same after ``switch_to_deploy()`` of every
  block that has one (Conv+BN folded, RepVGG branches merged, as the
  official ``model.deploy()`` does);
* ``plugin-ort`` / ``plugin-openvino``: the MMDeploy end-to-end graph
  (``configs/deploy/detection_onnxruntime_static-640x640.py`` at the input
  shape; outputs ``dets`` / ``labels``, :func:`export_end2end`) in ONNX
  Runtime (``ORT_ENABLE_ALL``, :func:`ort_runner`) and in OpenVINO (FP32,
  LATENCY hint, the plugin's :mod:`dfine_mmdet.deploy.backends.openvino`);
* ``official-ort`` / ``official-openvino``: the graph that the official
  ``tools/deployment/export_onnx.py`` produces -- ``model.deploy()``, inputs
  ``images`` and ``orig_target_sizes``, outputs ``labels`` / ``boxes`` /
  ``scores`` from the official post-processor, opset 16, constant folding,
  dynamic batch axis -- rebuilt from the same weights by
  :class:`OfficialExportGraph` (the official code is not imported; its
  ``onnxsim`` pass is not applied, ORT's and OpenVINO's own graph
  optimisations run instead), or a file written by the official tool.

:func:`path_rows` turns timed calls (:mod:`.timing`) into table rows with
the ratio to the fastest path and the speed-up over ``torch-eager``.
"""
import copy
import importlib.util
import inspect
import os.path as osp
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .models import REPO_ROOT, build_detector, data_samples, dfine_config
from .timing import summarize

#: the official exporter's opset (tools/deployment/export_onnx.py)
OFFICIAL_OPSET = 16
#: MMDeploy config of the end-to-end graph (its input shape is overridden)
ORT_STATIC_DEPLOY_CFG = osp.join(REPO_ROOT, 'configs', 'deploy',
                                 'detection_onnxruntime_static-640x640.py')


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

    def forward(
        self, images: torch.Tensor, orig_target_sizes: torch.Tensor
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
    """Export :class:`OfficialExportGraph` as the official tool does;
    returns ``path``."""
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
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        kwargs['dynamo'] = False  # the TorchScript exporter, as officially
    with torch.no_grad():
        torch.onnx.export(
            OfficialExportGraph(model).eval(), (images, sizes), path, **kwargs)
    return path


def export_end2end(model: nn.Module,
                   inputs: torch.Tensor,
                   prefix: str,
                   deploy_cfg: str = ORT_STATIC_DEPLOY_CFG) -> str:
    """The MMDeploy end-to-end graph (``dets`` / ``labels``) of any
    MMDetection detector (MMDeploy's rewriters) or D-FINE (the plugin's) at
    the shape of ``inputs [B, 3, H, W]``; returns the ``.onnx`` path. The
    export runs on a copy: MMDeploy's ``patch_model`` leaves the rewritten
    ``forward`` bound to the instance it exported."""
    from mmdeploy.apis.onnx import export
    from mmdeploy.codebase import import_codebase
    from mmdeploy.utils import Codebase, load_config

    import_codebase(Codebase.MMDET)  # MMDeploy's rewriters for mmdet models
    import dfine_mmdet.deploy  # noqa: F401  (the plugin's rewriters)
    cfg = load_config(deploy_cfg)[0]
    batch, _, h, w = inputs.shape
    cfg.onnx_config.input_shape = (w, h)
    export(
        copy.deepcopy(model),
        inputs,
        prefix,
        backend='onnxruntime',
        input_metas=dict(
            data_samples=data_samples(h, w, batch), mode='predict'),
        context_info=dict(deploy_cfg=cfg),
        input_names=['input'],
        output_names=['dets', 'labels'],
        opset_version=cfg.onnx_config.opset_version,
        keep_initializers_as_inputs=False)
    return prefix + '.onnx'


def ort_runner(onnx_file: str, feed: Mapping[str, np.ndarray],
               threads: int) -> Callable[[], object]:
    """One ONNX Runtime inference on the CPU (``threads`` intra-op threads,
    one inter-op thread, ``ORT_ENABLE_ALL``)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        onnx_file, options, providers=['CPUExecutionProvider'])
    feed = dict(feed)
    return lambda: session.run(None, feed)


def openvino_runner(onnx_file: str, feed: Mapping[str, np.ndarray],
                    threads: int) -> Callable[[], object]:
    """One OpenVINO inference on the CPU, FP32 (the plugin backend's compile
    settings), with the input shapes fixed to those of ``feed``."""
    import openvino as ov

    from dfine_mmdet.deploy.backends.openvino import DEFAULT_COMPILE_CONFIG
    core = ov.Core()
    model = core.read_model(onnx_file)
    model.reshape({name: list(a.shape) for name, a in feed.items()})
    props = dict(DEFAULT_COMPILE_CONFIG, INFERENCE_NUM_THREADS=threads)
    compiled = core.compile_model(model, 'CPU', props)
    request = compiled.create_infer_request()
    feed = dict(feed)
    return lambda: request.infer(feed)


def torch_runner(model: nn.Module,
                 inputs: torch.Tensor) -> Callable[[], object]:
    """One ``model(inputs, mode='tensor')`` under ``no_grad``."""

    def run():
        with torch.no_grad():
            return model(inputs, mode='tensor')

    return run


def have_openvino() -> bool:
    return importlib.util.find_spec('openvino') is not None


def build_dfine(variant: str) -> nn.Module:
    """Eval-mode D-FINE of ``configs/dfine/dfine_hgnetv2_{variant}_coco.py``
    with random weights (seed 0, no pretrained backbone)."""
    return build_detector(dfine_config(variant), init_weights=False)[0]


def build_paths(variant: str,
                size: int,
                threads: int,
                tmp: str,
                official_onnx: Optional[str] = None,
                skip: Sequence[str] = (),
                batch: int = 1) -> Dict[str, Callable[[], object]]:
    """Every path of the module docstring for one D-FINE size (random
    weights), as ``name -> callable running one inference``.

    Args:
        variant (str): ``'n'`` ... ``'x'``.
        size (int): input ``size x size``.
        threads (int): threads of ONNX Runtime / OpenVINO (PyTorch uses
            ``torch.get_num_threads()``).
        tmp (str): folder for the ONNX files.
        official_onnx (str, optional): a file written by the official
            exporter, timed as the ``official-*`` paths.
        skip (Sequence[str]): path names to leave out; ``'openvino'`` /
            ``'onnxruntime'`` / ``'torch'`` leave out a whole runtime.
        batch (int): batch size of the input.
    """
    torch.manual_seed(0)
    inputs = torch.rand(batch, 3, size, size)
    model = build_dfine(variant)
    paths: Dict[str, Callable[[], object]] = {}
    paths['torch-eager'] = torch_runner(model, inputs)
    fused = build_dfine(variant)
    fused.load_state_dict(model.state_dict())
    if switch_to_deploy(fused):
        paths['torch-eager-fused'] = torch_runner(fused, inputs)
    runtimes = []
    if 'onnxruntime' not in skip:
        runtimes.append(('ort', ort_runner))
    if have_openvino() and 'openvino' not in skip:
        runtimes.append(('openvino', openvino_runner))
    if runtimes:
        plugin_onnx = export_end2end(model, inputs,
                                     osp.join(tmp, f'{variant}_plugin'))
        if official_onnx is None:
            official_onnx = export_official_graph(
                fused, size, osp.join(tmp, f'{variant}_official.onnx'))
        plugin_feed = {'input': inputs.numpy()}
        official_feed = {
            'images': inputs.numpy(),
            'orig_target_sizes':
            np.array([[size, size]] * batch, dtype=np.int64)
        }
        for name, runner in runtimes:
            paths[f'plugin-{name}'] = runner(plugin_onnx, plugin_feed, threads)
            paths[f'official-{name}'] = runner(official_onnx, official_feed,
                                               threads)
    if 'torch' in skip:
        skip = list(skip) + ['torch-eager', 'torch-eager-fused']
    return {k: v for k, v in paths.items() if k not in skip}


def path_rows(times: Mapping[str, List[float]]) -> List[Dict[str, object]]:
    """Rows ``path``, ``median_ms``, ``p10_ms``, ``p90_ms``, ``n`` (from
    :func:`~.timing.summarize`), ``x_fastest`` (median / fastest median)
    and ``speedup_vs_eager`` (``torch-eager`` median / median, or None)."""
    rows = []
    for name, ts in times.items():
        stats = summarize(ts)
        rows.append(
            dict(
                path=name,
                median_ms=stats['median_ms'],
                p10_ms=stats['p10_ms'],
                p90_ms=stats['p90_ms'],
                n=stats['n']))
    fastest = min(r['median_ms'] for r in rows)
    eager = next((r['median_ms'] for r in rows if r['path'] == 'torch-eager'),
                 None)
    for r in rows:
        r['x_fastest'] = r['median_ms'] / fastest
        r['speedup_vs_eager'] = eager / r['median_ms'] if eager else None
    return rows


def format_path_table(variant: str, rows: List[Dict[str, object]]) -> str:
    """Markdown table of :func:`path_rows`, plus the best plugin / best
    official ratio when both kinds were timed."""
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
