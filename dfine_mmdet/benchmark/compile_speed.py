"""Eager vs ``torch.compile`` speed of D-FINE: training step and inference.

The training step is compiled the way MMEngine's ``compile`` config field
does it (``Runner._maybe_compile('train_step')``: ``torch.compile`` of the
model's bound ``train_step``); the Hungarian matching (scipy) and the
backward / optimizer calls are graph breaks there, the network forward is
one graph per static shape (``tests/test_models/test_compile.py``).
Inference compiles the network (``mode='tensor'``).

Two models with the same seed are timed alternately (eager, compiled,
eager, ...), so machine load drifts hit both; the first compiled call
(compilation) is reported separately.
"""
import copy
import statistics
import time
from typing import Dict, Optional

import torch

from .gpu_check import SelectionForward, aligned_diff
from .profiling import build_training


def compare_train_step(config: str,
                       batch_size: int = 4,
                       size: int = 640,
                       num_gt: int = 7,
                       iters: int = 3,
                       warmup: int = 1,
                       cfg_options: Optional[dict] = None,
                       compile_cfg: Optional[dict] = None) -> Dict:
    """Seconds per training iteration, eager and compiled (medians over
    ``iters`` alternating iterations after ``warmup``; the first compiled
    call is ``compile_s``) and the first-iteration losses of both."""
    eager = build_training(
        config, batch_size, size, num_gt, cfg_options=cfg_options)
    comp = build_training(
        config, batch_size, size, num_gt, cfg_options=cfg_options)
    comp[0].load_state_dict(eager[0].state_dict())
    compiled_step = torch.compile(comp[0].train_step, **(compile_cfg or {}))

    def run_eager():
        model, optim, data = eager
        return model.train_step(copy.copy(data), optim)

    def run_comp():
        model, optim, data = comp
        return compiled_step(copy.copy(data), optim)

    torch.manual_seed(0)
    loss_eager = float(run_eager()['loss'])
    torch.manual_seed(0)
    t = time.perf_counter()
    loss_comp = float(run_comp()['loss'])
    compile_s = time.perf_counter() - t
    times = dict(eager=[], compiled=[])
    for i in range(warmup + iters):
        for name, fn in (('eager', run_eager), ('compiled', run_comp)):
            t = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    e, c = statistics.median(times['eager']), statistics.median(
        times['compiled'])
    return dict(
        eager_s=e,
        compiled_s=c,
        speedup=e / c,
        compile_s=compile_s,
        loss_eager=loss_eager,
        loss_compiled=loss_comp,
        times=times)


def compare_inference(config: str,
                      batch_size: int = 1,
                      size: int = 640,
                      iters: int = 5,
                      warmup: int = 1,
                      cfg_options: Optional[dict] = None,
                      compile_cfg: Optional[dict] = None) -> Dict:
    """Network latency (``mode='tensor'``, no grad), eager vs compiled,
    alternating; ``score_diff`` / ``box_diff`` / ``same_queries`` of the
    compiled outputs against eager, queries aligned by their selected token
    (random weights have near-tied encoder scores, so a top-k position
    comparison would mix up queries)."""
    model = build_training(config, 1, 64, 1, cfg_options=cfg_options)[0]
    model.eval()
    net = SelectionForward(model).eval()
    compiled = torch.compile(net, **(compile_cfg or {}))
    x = torch.rand(
        batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net(x)
        t = time.perf_counter()
        got = compiled(x)
        compile_s = time.perf_counter() - t
        d_score, d_box, common = aligned_diff(got, want)
        times = dict(eager=[], compiled=[])
        for i in range(warmup + iters):
            for name, fn in (('eager', net), ('compiled', compiled)):
                t = time.perf_counter()
                fn(x)
                if i >= warmup:
                    times[name].append(time.perf_counter() - t)
    e, c = statistics.median(times['eager']), statistics.median(
        times['compiled'])
    return dict(
        eager_s=e,
        compiled_s=c,
        speedup=e / c,
        compile_s=compile_s,
        score_diff=d_score,
        box_diff=d_box,
        same_queries=common,
        times=times)
