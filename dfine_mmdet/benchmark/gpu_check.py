"""One-command accelerator check of D-FINE (``tools/gpu_check.py``).

For each variant (default N and S) it runs, on one device:

* ``train/<precision>``: training iterations in fp32, fp16 autocast (with a
  ``GradScaler``) and bf16 autocast -- forward with denoising, loss (matching,
  GO-LSD), backward, grad clip, AdamW; checks that every loss term is finite
  and float32 (the loss must not run in half precision) and reports
  iterations per second;
* ``agree/<precision>``: inference with fp16 / bf16 autocast against fp32 on
  the parity input (``shared/parity/parity_input.npz`` with the official
  random weights, loaded through the checkpoint converter as the parity
  tests do; random init when the parity folder is absent): max |score
  difference| and max |box difference| (normalised) of the final layer, and
  the overlap of the top-100 detections;
* ``latency/<eager|compiled>/b<N>``: network latency (``mode='tensor'``,
  fp32 inputs already on the device) at the given batch sizes, eager and
  ``torch.compile``-d.

Everything is printed as one Markdown table; a check that raises is a
``FAIL`` row with the error, the others still run.  Nothing is downloaded.
A time budget skips the checks that would not fit (``SKIP`` rows).
"""
import importlib.util
import math
import os.path as osp
import statistics
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .profiling import build_training, quiet_init_weights, synthetic_batch

PRECISIONS = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
#: Agreement thresholds with fp32 (scores: sigmoid probabilities; boxes:
#: normalised cxcywh): generous bounds for a healthy half-precision path,
#: a broken one (overflow, wrong dtype in the FDR integral) is off by O(1).
AGREE_LIMITS = {
    'fp16': dict(score=0.05, box=0.02),
    'bf16': dict(score=0.15, box=0.06)
}


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _to_device(data: dict, device: torch.device) -> dict:
    return dict(
        inputs=[x.to(device) for x in data['inputs']],
        data_samples=[s.to(device) for s in data['data_samples']])


class TensorForward(nn.Module):
    """The network of a detector as ``f(images) -> (scores, boxes)`` of the
    last decoder layer (``mode='tensor'``), for timing and compiling."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor):
        logits, boxes = self.detector._forward(images)[:2]
        return logits[-1], boxes[-1]


def check_train(config: str,
                device: torch.device,
                precision: str,
                batch_size: int,
                size: int,
                iters: int,
                warmup: int = 1,
                cfg_options: Optional[dict] = None) -> Dict:
    """Training iterations at one precision; returns the row values."""
    model, optim, data = build_training(
        config, batch_size, size, cfg_options=cfg_options)
    model.to(device)
    data = _to_device(data, device)
    dtype = PRECISIONS[precision]
    scaler = (
        torch.amp.GradScaler(device.type) if dtype is torch.float16 else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optim.optimizer
    bad, times, last = [], [], None
    for it in range(warmup + iters):
        _sync(device)
        t = time.perf_counter()
        with torch.autocast(
                device.type,
                dtype=dtype or torch.float32,
                enabled=dtype is not None):
            batch = model.data_preprocessor(data, True)
            losses = model._run_forward(batch, mode='loss')
        for k, v in losses.items():
            if not isinstance(v, torch.Tensor):
                continue
            if v.dtype != torch.float32:
                bad.append(f'{k} is {v.dtype}')
            if not torch.isfinite(v).all():
                bad.append(f'{k} not finite')
        loss, _ = model.parse_losses(losses)
        opt.zero_grad()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 0.1)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.1)
            opt.step()
        _sync(device)
        if it >= warmup:
            times.append(time.perf_counter() - t)
        last = float(loss.detach())
    ok = not bad and math.isfinite(last)
    return dict(
        status='PASS' if ok else 'FAIL',
        value=f'{1.0 / statistics.median(times):.2f} it/s',
        detail=(f'loss {last:.3f}, {len(losses)} terms fp32 and finite'
                if ok else '; '.join(sorted(set(bad)))[:200]))


def parity_model(config: str,
                 parity_dir: Optional[str],
                 variant: str,
                 size: int = 640,
                 cfg_options: Optional[dict] = None) -> tuple:
    """(eval model, [2, 3, 640, 640] float images in [0, 1], weights note):
    the parity tests' model (official random weights through the converter)
    when ``parity_dir`` holds the fixtures, else random init and random
    images."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401  (registers the plugin)
    init_default_scope('mmdet')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    fixture = (
        osp.join(parity_dir, f'dfine_{variant}_coco.npz')
        if parity_dir else None)
    if fixture and osp.isfile(fixture) and osp.isfile(
            osp.join(parity_dir, 'parity_input.npz')):
        import numpy as np

        from ..checkpoint.official import convert_state_dict
        spec = importlib.util.spec_from_file_location(
            '_official_random_weights',
            osp.join(parity_dir, 'official_random_weights.py'))
        orw = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(orw)
        fx = np.load(fixture)
        sd = orw.make_state_dict(
            orw.load_keys_spec(
                osp.join(parity_dir, f'dfine_{variant}_coco_keys.json')),
            seed=int(fx['meta/weight_seed']),
            fixed=orw.load_fixed_buffers(fx),
            gain=float(fx['meta/weight_gain']))
        model.load_state_dict(convert_state_dict(sd), strict=True)
        images = np.load(osp.join(parity_dir,
                                  'parity_input.npz'))['images_uint8']
        return (model.eval(), torch.from_numpy(images).float() / 255,
                'parity weights + input')
    quiet_init_weights(model)
    g = torch.Generator().manual_seed(0)
    return model.eval(), torch.rand(
        2, 3, size, size, generator=g), 'random init + input'


class SelectionForward(nn.Module):
    """Network forward returning the last layer's logits ``[B, Q, C]``,
    boxes ``[B, Q, 4]`` and the memory token each query was selected from
    ``[B, Q]`` (to align queries across precisions)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor):
        det = self.detector
        head_inputs = det.forward_transformer(det.extract_feat(images))
        token = head_inputs['enc_topk_index']
        logits, boxes = det.bbox_head(**head_inputs)[:2]
        return logits[-1], boxes[-1], token


def aligned_diff(out: tuple, ref: tuple) -> Tuple[float, float, float]:
    """Max |sigmoid score diff|, max |box diff| and the smallest per-image
    share of common selected tokens between two :class:`SelectionForward`
    outputs ``(logits, boxes, token)``, queries aligned by token (a top-k
    may order near-tied tokens differently under another precision or
    kernel)."""
    logits, boxes, token = out
    d_score = d_box = 0.0
    common = []
    for b in range(token.shape[0]):
        pos_ref = {int(t): i for i, t in enumerate(ref[2][b].tolist())}
        pairs = [(i, pos_ref[int(t)]) for i, t in enumerate(token[b].tolist())
                 if int(t) in pos_ref]
        common.append(len(pairs) / max(1, token.shape[1]))
        if not pairs:
            continue
        ours = torch.tensor([p[0] for p in pairs], device=token.device)
        theirs = torch.tensor([p[1] for p in pairs], device=token.device)
        s = logits[b, ours].float().sigmoid()
        s_ref = ref[0][b, theirs].float().sigmoid()
        d_score = max(d_score, float((s - s_ref).abs().max()))
        d_box = max(
            d_box,
            float((boxes[b, ours].float() -
                   ref[1][b, theirs].float()).abs().max()))
    return d_score, d_box, min(common)


def check_agreement(model: nn.Module,
                    images: torch.Tensor,
                    device: torch.device,
                    precision: str,
                    ref: Optional[tuple] = None,
                    min_common: float = 0.9) -> tuple:
    """Autocast inference vs fp32; returns (row values, fp32 reference).

    Queries are aligned by the memory token they were selected from (query
    selection is a top-k, its order may change with the precision); scores
    and boxes are compared on the tokens both runs selected, and the share
    of common tokens is reported (and must be >= ``min_common``; with
    random-init weights the encoder scores are nearly tied and the selection
    is not stable under any precision change, pass 0 there).
    """
    net = SelectionForward(model).to(device).eval()
    images = images.to(device)
    with torch.no_grad():
        if ref is None:
            lg, bx, tk = net(images)
            ref = (lg.float(), bx.float(), tk)
        with torch.autocast(device.type, dtype=PRECISIONS[precision]):
            logits, boxes, token = net(images)
    finite = bool(torch.isfinite(logits).all() and torch.isfinite(boxes).all())
    d_score, d_box, common = aligned_diff((logits, boxes, token), ref)
    lim = AGREE_LIMITS[precision]
    ok = (
        finite and d_score <= lim['score'] and d_box <= lim['box']
        and common >= min_common)
    return dict(
        status='PASS' if ok else 'FAIL',
        value=f'score {d_score:.2e}, box {d_box:.2e}',
        detail=(f'same selected queries {common:.2f}; limits score '
                f'{lim["score"]}, box {lim["box"]}, queries {min_common}' +
                ('' if finite else '; NON-FINITE output'))), ref


def time_forward(fn: Callable, x: torch.Tensor, device: torch.device,
                 iters: int, warmup: int) -> float:
    """Median seconds of ``fn(x)`` (no grad) after ``warmup`` calls."""
    times = []
    with torch.no_grad():
        for i in range(warmup + iters):
            _sync(device)
            t = time.perf_counter()
            fn(x)
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_checks(variants: Sequence[str],
               config_for: Callable[[str], str],
               device: str = 'cuda',
               train_batch: int = 4,
               train_size: int = 640,
               train_iters: int = 5,
               precisions: Sequence[str] = ('fp32', 'fp16', 'bf16'),
               latency_batches: Sequence[int] = (1, 32),
               latency_size: int = 640,
               latency_iters: int = 10,
               compile_model: bool = True,
               parity_dir: Optional[str] = None,
               budget_s: float = 420.0,
               cfg_options: Optional[dict] = None,
               log: Callable[[str], None] = print) -> List[Dict]:
    """Run every check; returns the table rows (dicts with ``variant``,
    ``check``, ``status`` (PASS / FAIL / SKIP), ``value``, ``detail``)."""
    dev = torch.device(device)
    start = time.perf_counter()
    rows = []

    def run(variant, check, fn, cost_s=0.0):
        left = budget_s - (time.perf_counter() - start)
        if left < cost_s:
            rows.append(
                dict(
                    variant=variant,
                    check=check,
                    status='SKIP',
                    value='',
                    detail=f'time budget ({left:.0f} s '
                    'left)'))
            return None
        t = time.perf_counter()
        try:
            res = fn()
        except Exception as e:  # a failed check is a row, not a crash
            res = dict(
                status='FAIL',
                value='',
                detail=f'{type(e).__name__}: {e}'.replace('\n', ' ')[:300])
            log(traceback.format_exc())
        extra = None
        if isinstance(res, tuple):
            res, extra = res
        rows.append(dict(variant=variant, check=check, **res))
        log(f'[gpu_check] {variant} {check}: {res["status"]} {res["value"]} '
            f'({time.perf_counter() - t:.1f} s)')
        return extra if extra is not None else res

    for v in variants:
        cfg = config_for(v)
        for p in precisions:
            run(
                v, f'train/{p}', lambda: check_train(
                    cfg,
                    dev,
                    p,
                    train_batch,
                    train_size,
                    train_iters,
                    cfg_options=cfg_options))
        model, images, note = parity_model(cfg, parity_dir, v, latency_size,
                                           cfg_options)
        ref = None
        # random init: near-tied encoder scores, the top-k selection is not
        # stable under any numeric change (see check_agreement)
        min_common = 0.9 if note.startswith('parity') else 0.0
        for p in precisions:
            if p == 'fp32':
                continue

            def agree(p=p):
                nonlocal ref
                res, ref = check_agreement(
                    model, images, dev, p, ref, min_common=min_common)
                res['detail'] += f'; {note}'
                return res

            run(v, f'agree/{p}', agree)
        net = SelectionForward(model).to(dev).eval()
        compiled = torch.compile(net) if compile_model else None
        for b in latency_batches:
            x = torch.rand(b, 3, latency_size, latency_size, device=dev)
            eager_s = {}

            def eager(x=x, b=b):
                s = time_forward(net, x, dev, latency_iters, 2)
                eager_s[b] = s
                return dict(
                    status='PASS',
                    value=f'{s * 1e3:.2f} ms',
                    detail=f'{b / s:.1f} img/s')

            run(v, f'latency/eager/b{b}', eager)
            if compiled is None:
                continue

            def comp(x=x, b=b):
                t = time.perf_counter()
                with torch.no_grad():
                    out = compiled(x)
                    want = net(x)
                c_s = time.perf_counter() - t
                d_score, d_box, common = aligned_diff(out, want)
                ok = (d_score < 1e-3 and d_box < 1e-3 and common >= min_common)
                s = time_forward(compiled, x, dev, latency_iters, 1)
                speed = (f', {eager_s[b] / s:.2f}x eager'
                         if b in eager_s else '')
                return dict(
                    status='PASS' if ok else 'FAIL',
                    value=f'{s * 1e3:.2f} ms',
                    detail=f'compile {c_s:.0f} s{speed}; vs eager: score '
                    f'{d_score:.1e}, box {d_box:.1e}, same queries '
                    f'{common:.2f}')

            run(v, f'latency/compiled/b{b}', comp, cost_s=30.0)
        model = net = compiled = None  # free before the next variant
        if dev.type == 'cuda':
            torch.cuda.empty_cache()
    return rows


def format_table(rows: List[Dict], header: str = '') -> str:
    """One Markdown table of the rows."""
    lines = [header] if header else []
    lines += [
        '| variant | check | status | value | detail |',
        '|---|---|---|---|---|'
    ]
    for r in rows:
        lines.append(f'| {r["variant"].upper()} | {r["check"]} | '
                     f'{r["status"]} | {r["value"]} | {r["detail"]} |')
    return '\n'.join(lines)


__all__ = [
    'run_checks', 'format_table', 'check_train', 'check_agreement',
    'parity_model', 'TensorForward', 'synthetic_batch'
]
