"""Check a deployed D-FINE (ONNX Runtime / TensorRT) against PyTorch.

Both models get the same preprocessed batch (MMDeploy's
``task_processor.create_input``). PyTorch runs the unmodified
``DFINE.test_step`` (``predict`` with ``rescale=True``), and the backend runs
MMDeploy's ``End2EndModel.test_step`` (graph, then ``/ scale_factor``). Both
return ``K = max_per_img`` detections per image, sorted by score. Detections
whose scores tie can come back in a different order, so every PyTorch
detection is paired with a backend detection of the **same label** whose
score is within ``score_tol``, choosing the nearest box.
:func:`match_detections` reports the largest box and score differences over
the pairs and how many detections found no partner.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch


def match_detections(ref_bboxes: torch.Tensor,
                     ref_scores: torch.Tensor,
                     ref_labels: torch.Tensor,
                     test_bboxes: torch.Tensor,
                     test_scores: torch.Tensor,
                     test_labels: torch.Tensor,
                     score_tol: float = 1e-4) -> Dict[str, float]:
    """Pair two detection sets one-to-one (same label, scores within
    ``score_tol``, nearest box by L-inf distance).

    Args:
        ref_* / test_*: ``bboxes`` ``[K, 4]``, ``scores`` ``[K]``,
            ``labels`` ``[K]`` of one image.
        score_tol (float): Largest score difference allowed within a pair.

    Returns:
        dict: ``num_ref``, ``num_test``, ``unmatched`` (reference detections
        without a partner), ``max_box_diff`` (pixels), ``max_score_diff``,
        ``same_order_labels`` (fraction of positions whose labels agree
        without re-pairing).
    """
    rb, rs, rl = (
        t.detach().cpu().double()
        for t in (ref_bboxes, ref_scores, ref_labels))
    tb, ts, tl = (
        t.detach().cpu().double()
        for t in (test_bboxes, test_scores, test_labels))
    used = torch.zeros(len(ts), dtype=torch.bool)
    max_box = max_score = 0.0
    unmatched = 0
    for i in range(len(rs)):
        cand = (~used) & (tl == rl[i]) & ((ts - rs[i]).abs() <= score_tol)
        idx = torch.nonzero(cand).flatten()
        if idx.numel() == 0:
            unmatched += 1
            continue
        box_diff = (tb[idx] - rb[i]).abs().amax(-1)
        best = int(idx[int(box_diff.argmin())])
        used[best] = True
        max_box = max(max_box, float(box_diff.min()))
        max_score = max(max_score, float((ts[best] - rs[i]).abs()))
    n = min(len(rl), len(tl))
    same_order = float((rl[:n] == tl[:n]).float().mean()) if n else 1.0
    return dict(
        num_ref=len(rs),
        num_test=len(ts),
        unmatched=unmatched,
        max_box_diff=max_box,
        max_score_diff=max_score,
        same_order_labels=same_order)


def compare_with_pytorch(deploy_cfg,
                         model_cfg,
                         checkpoint: Optional[str],
                         backend_files: Sequence[str],
                         imgs: Union[str, np.ndarray, List],
                         device: str = 'cpu',
                         score_tol: float = 1e-4) -> List[Dict[str, float]]:
    """Run PyTorch and the backend on ``imgs`` (one batch) and match them.

    Args:
        deploy_cfg, model_cfg: Configs (paths or ``Config``).
        checkpoint (str, optional): PyTorch checkpoint, as used for export.
        backend_files (list[str]): e.g. ``['work_dir/end2end.onnx']``.
        imgs: One image (path or HxWx3 uint8 BGR array) or a list of them;
            a list runs as one batch.
        device (str): ``cpu`` for ONNX Runtime, ``cuda:0`` for TensorRT.

    Returns:
        list[dict]: one :func:`match_detections` report per image.
    """
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_input_shape, load_config

    deploy_cfg, model_cfg = load_config(deploy_cfg, model_cfg)
    task_processor = build_task_processor(model_cfg, deploy_cfg, device)
    torch_model = task_processor.build_pytorch_model(checkpoint)
    backend_model = task_processor.build_backend_model(
        list(backend_files), task_processor.update_data_preprocessor)
    data, _ = task_processor.create_input(imgs, get_input_shape(deploy_cfg))
    with torch.no_grad():
        ref = torch_model.test_step(data)
        out = backend_model.test_step(data)
    reports = []
    for r, o in zip(ref, out):
        r, o = r.pred_instances, o.pred_instances
        reports.append(
            match_detections(r.bboxes, r.scores, r.labels, o.bboxes, o.scores,
                             o.labels, score_tol))
    return reports


def run_onnxruntime(onnx_file: str,
                    inputs: torch.Tensor,
                    num_threads: int = 0) -> Dict[str, np.ndarray]:
    """Run an exported graph with a **plain** ONNX Runtime session.

    No MMDeploy op library is registered, so a graph that still contained
    an ``mmdeploy::`` op would fail to load here.

    Returns:
        dict: output name -> array (``dets`` ``[B, K, 5]``, ``labels``
        ``[B, K]``).
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    sess = ort.InferenceSession(
        onnx_file, options, providers=['CPUExecutionProvider'])
    from .input_shape_check import check_input_shapes, onnxruntime_input_shapes
    check_input_shapes(
        onnxruntime_input_shapes(sess),
        {sess.get_inputs()[0].name: tuple(inputs.shape)}, onnx_file)
    outputs = sess.run(None, {sess.get_inputs()[0].name: inputs.numpy()})
    return {o.name: v for o, v in zip(sess.get_outputs(), outputs)}


def compare_onnx_with_pytorch(
        deploy_cfg,
        model_cfg,
        checkpoint: Optional[str],
        onnx_file: str,
        imgs: Union[str, np.ndarray, List],
        score_tol: float = 1e-4) -> List[Dict[str, float]]:
    """Like :func:`compare_with_pytorch`, but the graph runs in a plain ONNX
    Runtime session (see :func:`run_onnxruntime`) and no backend wrapper is
    built. This is how a graph exported for TensorRT is checked numerically
    on a machine without TensorRT: it has only standard ops, so ONNX Runtime
    can run it. Boxes are divided by ``scale_factor`` as MMDeploy's
    ``End2EndModel`` does.
    """
    from mmdeploy.utils import get_input_shape, load_config

    from .export import build_task_processor_cpu
    deploy_cfg, model_cfg = load_config(deploy_cfg, model_cfg)
    task_processor = build_task_processor_cpu(model_cfg, deploy_cfg)
    torch_model = task_processor.build_pytorch_model(checkpoint)
    data, inputs = task_processor.create_input(imgs,
                                               get_input_shape(deploy_cfg),
                                               torch_model.data_preprocessor)
    with torch.no_grad():
        ref = torch_model(inputs, data['data_samples'], mode='predict')
    out = run_onnxruntime(onnx_file, inputs)
    dets, labels = torch.from_numpy(out['dets']), torch.from_numpy(
        out['labels'])
    reports = []
    for i, sample in enumerate(ref):
        scale = torch.tensor(
            sample.metainfo['scale_factor'], dtype=dets.dtype).repeat(2)
        r = sample.pred_instances
        reports.append(
            match_detections(r.bboxes, r.scores, r.labels,
                             dets[i, :, :4] / scale, dets[i, :, 4], labels[i],
                             score_tol))
    return reports
