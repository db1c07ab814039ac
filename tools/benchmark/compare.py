"""D-FINE beside MMDetection's detectors, measured in one run: params, FLOPs,
latency.

Usage::

    # default set, 640x640
    python tools/benchmark/compare.py
    python tools/benchmark/compare.py configs/dfine/dfine_hgnetv2_n_coco.py \\
        mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py --threads 2 --runs 10 \\
        --out-dir work_dirs/compare
    # + toy mAP, equal training time
    python tools/benchmark/compare.py --toy-minutes 2
    # + COCO box AP
    python tools/benchmark/compare.py \\
        D-FINE-N=configs/dfine/dfine_hgnetv2_n_coco.py \\
        RTMDet-tiny=mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py \\
        --coco-root data/coco \\
        --checkpoints D-FINE-N=dfine_n.pth RTMDet-tiny=rtmdet_tiny.pth

Configs are plugin config files or MMDetection's own, written ``mmdet::<path
under mmdet's configs>`` (resolved in the installed package). Every model is
built with its own random initialisation (``init_weights()`` after removing
``Pretrained`` ``init_cfg`` entries, so nothing downloads; e.g. the score bias
prior keeps NMS detectors' post-processing at a realistic load)
and measured in its own subprocess (``--timeout`` seconds each; a model that
fails or times out gets a row saying why) with the same input, thread count
and process settings:

* ``params``: ``sum(p.numel() for p in model.parameters())`` of the built
  model;
* ``GFLOPs``: MMEngine's ``FlopAnalyzer`` on ``model._forward`` (the
  ``mode='tensor'`` graph, as MMDetection's ``get_flops`` does), multiply-adds
  counted as one, plus a handle for ``aten::grid_sampler`` so deformable
  attention is counted (see :mod:`dfine_mmdet.benchmark.flops`); element-wise
  ops are not counted (MMEngine's convention);
* ``eager``: ``model(x, samples, mode='predict')`` under ``no_grad`` (backbone
  to post-processed boxes, the data preprocessor excluded), batch 1;
* ``ort``: ONNX Runtime (CPU, same threads, ``ORT_ENABLE_ALL``) on the
  MMDeploy end-to-end graph
  (``configs/deploy/detection_onnxruntime_static-640x640.py`` at the
  benchmark's input size; MMDeploy's rewriters for MMDetection's models, the
  plugin's for D-FINE), outputs ``dets``/``labels``; export time excluded;
* ``fp16`` (only with ``--device cuda``): eager under ``torch.autocast`` fp16.

Latency: ``--warmup`` untimed calls then ``--runs`` timed calls; the table
shows the median and, in the JSON/CSV, every time and the p10-p90 spread.

Accuracy (optional, one of; details in :mod:`dfine_mmdet.benchmark.accuracy`):

* ``--coco-root DIR --checkpoints LABEL=CKPT ...``: COCO box AP of each
  checkpoint through MMDetection's evaluator (``Runner.from_cfg(cfg).test()``,
  the config's own test pipeline and ``CocoMetric``, its test set read from
  ``DIR``: ``DIR/annotations/instances_val2017.json`` and ``DIR/val2017/`` for
  COCO configs); the JSON also says how many model tensors the checkpoint
  covered and how many images were evaluated. Models without a checkpoint get
  a row note.
* ``--toy-minutes M``: every model is trained from scratch on the synthetic toy
  set (``tools/make_toy_dataset.py``, written to ``--toy-data`` when absent)
  for the same M minutes of wall clock (``WallClockBudgetHook``), same seed,
  same data, pipeline, ``--toy-size`` and ``--toy-batch``, then evaluated on
  the toy val split: columns ``toy mAP`` and ``iters`` (iterations the budget
  allowed). Models are adapted generically
  (:mod:`dfine_mmdet.benchmark.num_classes`); a model that
  cannot be adapted or trained gets a row note.
* ``--ap``: the *published* COCO val2017 box AP (%) of every model whose label
  or config is in :mod:`dfine_mmdet.benchmark.published_ap` (sources cited
  there); ``--ap LABEL=AP ...`` supplies or overrides values. A model without
  a value gets a row note.

COCO-style mAP is in [0, 1]; -1 is what pycocotools reports when there was
nothing to score (no ground truth).

Outputs in ``--out-dir``: ``compare.md`` (also printed), ``compare.json``
(every raw number), ``compare.csv`` and ``compare.png`` (latency vs accuracy,
one labelled point per model at its ORT latency, or eager where ORT failed,
when an accuracy is known; else latency vs GFLOPs).
"""
import argparse
import csv
import datetime
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

from dfine_mmdet.benchmark.flops import count_flops
from dfine_mmdet.benchmark.models import (build_detector, data_samples,
                                          resolve_config)
from dfine_mmdet.benchmark.timing import summarize, time_calls

#: the default comparison set (label, config)
DEFAULT_SET = [
    ('RTMDet-tiny', 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'),
    ('RTMDet-s', 'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py'),
    ('YOLOX-tiny', 'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py'),
    ('YOLOX-s', 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'),
    ('DINO-R50-4scale', 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'),
    ('DeformableDETR-R50',
     'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'),
    ('D-FINE-N', 'configs/dfine/dfine_hgnetv2_n_coco.py'),
    ('D-FINE-S', 'configs/dfine/dfine_hgnetv2_s_coco.py'),
    ('D-FINE-M', 'configs/dfine/dfine_hgnetv2_m_coco.py'),
]


# ------------------------------------------------------------------- measuring
def build_model(cfg: str, size: Optional[int] = None):
    """Eval-mode detector of ``cfg`` with its own random initialisation, and
    its config (:func:`dfine_mmdet.benchmark.models.build_detector`)."""
    return build_detector(cfg, size)


class TensorForward:
    """``model._forward(x, samples)`` as a callable module for tracing
    (FLOPs)."""

    def __new__(cls, model, samples):
        import torch.nn as nn

        class _Wrap(nn.Module):

            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                return self.model._forward(x, samples)

        return _Wrap()


def export_ort_session(model, inputs, tmp: str):
    """Callable running ONNX Runtime on the MMDeploy end-to-end graph of
    ``model`` (:mod:`dfine_mmdet.benchmark.inference_paths`)."""
    import torch

    from dfine_mmdet.benchmark.inference_paths import (export_end2end,
                                                       ort_runner)
    onnx_file = export_end2end(model, inputs, osp.join(tmp, 'end2end'))
    return ort_runner(onnx_file, {'input': inputs.numpy()},
                      torch.get_num_threads())


def measure(cfg: str, args, result: Dict[str, Any],
            save: Callable[[], None]) -> None:
    """Fill ``result`` stage by stage (``save()`` after each, so a timeout
    keeps what was measured). Stage errors are recorded in
    ``result['errors']``."""
    import torch
    model, _ = build_model(cfg, args.size)
    device = torch.device(args.device)
    model.to(device)
    result['params'] = int(sum(p.numel() for p in model.parameters()))
    result['model_type'] = type(model).__name__
    save()
    h = w = args.size
    inputs = torch.rand(1, 3, h, w, device=device)
    samples = data_samples(h, w)
    errors = result.setdefault('errors', {})

    if 'flops' in args.measure:
        try:
            with torch.no_grad():
                res = count_flops(TensorForward(model, samples), (inputs, ))
            result.update(
                gflops=res['flops'] / 1e9,
                grid_sampler_gflops=res['grid_sampler_flops'] / 1e9,
                flops_uncounted_ops=res['unsupported'])
        except Exception as e:  # noqa: BLE001 (recorded in the row)
            errors['flops'] = f'{type(e).__name__}: {e}'
        save()

    if 'eager' in args.measure:
        try:
            with torch.no_grad():
                times = time_calls(
                    lambda: model(inputs, samples, mode='predict'),
                    args.warmup, args.runs)
            result['eager'] = summarize(times)
        except Exception as e:  # noqa: BLE001
            errors['eager'] = f'{type(e).__name__}: {e}'
        save()

    if 'fp16' in args.measure and device.type == 'cuda':
        try:
            with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16):

                def call():
                    model(inputs, samples, mode='predict')
                    torch.cuda.synchronize()

                result['fp16'] = summarize(
                    time_calls(call, args.warmup, args.runs))
        except Exception as e:  # noqa: BLE001
            errors['fp16'] = f'{type(e).__name__}: {e}'
        save()

    if 'ort' in args.measure:
        try:
            cpu_model = model.cpu()
            cpu_in = inputs.cpu()
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                run_ort = export_ort_session(cpu_model, cpu_in, tmp)
                result['ort_export_s'] = time.perf_counter() - t0
            result['ort'] = summarize(
                time_calls(run_ort, args.warmup, args.runs))
        except Exception as e:  # noqa: BLE001
            errors['ort'] = (f'{type(e).__name__}: '
                             f'{str(e).splitlines()[0] if str(e) else ""}')
            if args.verbose:
                traceback.print_exc()
        save()

    if args.toy_minutes or args.coco_root:
        del model
        try:
            measure_accuracy(cfg, args, result)
        except Exception as e:  # noqa: BLE001 (recorded in the row)
            errors['accuracy'] = (
                f'{type(e).__name__}: '
                f'{str(e).splitlines()[0] if str(e) else ""}')
            traceback.print_exc()
        save()


def measure_accuracy(cfg: str, args, result: Dict[str, Any]) -> None:
    """Toy mAP after ``--toy-minutes`` of training, or COCO AP of
    ``--checkpoint``."""
    import torch

    from dfine_mmdet.benchmark import accuracy
    with tempfile.TemporaryDirectory() as work_dir:
        if args.toy_minutes:
            toy_cfg, adapted = accuracy.toy_config(
                resolve_config(cfg),
                args.toy_data,
                work_dir,
                size=args.toy_size,
                batch_size=args.toy_batch,
                seed=args.seed,
                warmup_iters=args.toy_warmup,
                device=args.device)
            result['accuracy'] = dict(kind='toy mAP', adapted=adapted)
            result['accuracy'].update(
                accuracy.train_and_evaluate(toy_cfg, args.toy_minutes * 60))
        else:
            if not args.checkpoint:
                result['errors']['accuracy'] = (
                    'no checkpoint given (--checkpoints LABEL=PATH)')
                return
            coco_cfg = accuracy.coco_config(
                resolve_config(cfg), args.coco_root, args.checkpoint, work_dir)
            result['accuracy'] = dict(
                kind='COCO AP', checkpoint=args.checkpoint)
            result['accuracy'].update(accuracy.evaluate_checkpoint(coco_cfg))
            acc = result['accuracy']
            if acc['ckpt_covered'] < acc['ckpt_total']:
                result['errors']['accuracy'] = (
                    'checkpoint covers '
                    f'{acc["ckpt_covered"]}/{acc["ckpt_total"]} model tensors '
                    f'(e.g. {", ".join(acc["ckpt_missing"][:2])})')
    result['ap'] = result['accuracy']['map']
    torch.set_num_threads(args.threads)  # the runner may have changed it


def worker_main(args) -> int:
    """Measure one model (``--worker CFG``) and write its JSON to
    ``--result``."""
    import torch
    torch.set_num_threads(args.threads)
    result: Dict[str, Any] = dict(config=args.worker, status='running')

    def save():
        with open(args.result, 'w') as f:
            json.dump(result, f)

    try:
        measure(args.worker, args, result, save)
        result['status'] = 'ok'
    except Exception as e:  # noqa: BLE001 (the parent writes the row)
        result['status'] = (f'failed: {type(e).__name__}: '
                            f'{str(e).splitlines()[0] if str(e) else ""}')
        traceback.print_exc()
    save()
    return 0


def run_one(label: str, cfg: str, args, tmp: str, idx: int) -> Dict[str, Any]:
    """Run the worker for one config in a subprocess with ``--timeout``."""
    result_path = osp.join(tmp, f'model_{idx}.json')
    cmd = [
        sys.executable,
        osp.abspath(__file__), '--worker', cfg, '--result', result_path,
        '--size',
        str(args.size), '--threads',
        str(args.threads), '--warmup',
        str(args.warmup), '--runs',
        str(args.runs), '--device', args.device, '--measure', *args.measure
    ] + (['--verbose'] if args.verbose else [])
    timeout = args.timeout
    if args.toy_minutes:
        cmd += [
            '--toy-minutes',
            str(args.toy_minutes), '--toy-data', args.toy_data, '--toy-size',
            str(args.toy_size), '--toy-batch',
            str(args.toy_batch), '--toy-warmup',
            str(args.toy_warmup), '--seed',
            str(args.seed)
        ]
        timeout += 60 * args.toy_minutes  # the training budget comes on top
    elif args.coco_root:
        cmd += ['--coco-root', args.coco_root]
        if args.checkpoints.get(label):
            cmd += ['--checkpoint', args.checkpoints[label]]
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads))
    if args.device == 'cpu':
        # the runner of the accuracy stage would pick CUDA
        env['CUDA_VISIBLE_DEVICES'] = ''
    start = time.perf_counter()
    status = None
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=os.getcwd())
        if proc.returncode != 0:
            status = f'failed: exit code {proc.returncode}'
        if args.verbose or proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    except subprocess.TimeoutExpired:
        status = f'timeout after {timeout:g} s'
    result: Dict[str, Any] = dict(config=cfg)
    if osp.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    if status is not None and status.startswith('timeout'):
        result['status'] = status  # what was measured before the timeout stays
    elif result.get('status') != 'ok':
        result['status'] = status if result.get('status') in (
            None, 'running') else result['status']
        result['status'] = result['status'] or 'failed: no result written'
    result['label'] = label
    result['wall_s'] = time.perf_counter() - start
    return result


# --------------------------------------------------------------------- outputs
def _ms(entry: Optional[Dict[str, Any]]) -> Optional[float]:
    return entry['median_ms'] if entry else None


def row_note(r: Dict[str, Any]) -> str:
    notes = []
    if r.get('status') != 'ok':
        notes.append(str(r.get('status')))
    for k, v in (r.get('errors') or {}).items():
        notes.append(f'{k}: {v}'[:120])
    return '; '.join(notes).replace('|', '/')


def _accuracy(r: Dict[str, Any], key: str):
    return (r.get('accuracy') or {}).get(key)


def markdown_table(results: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    has_fp16 = any(r.get('fp16') for r in results)
    acc = meta.get('accuracy') or {}
    has_ap = bool(acc) or any(r.get('ap') is not None for r in results)
    has_iters = acc.get('kind') == 'toy mAP'
    head = ['model', 'params (M)', 'GFLOPs', 'eager (ms)', 'ORT (ms)']
    if has_fp16:
        head.append('CUDA fp16 (ms)')
    if has_ap:
        head.append(acc.get('kind', 'AP'))
    if has_iters:
        head.append('iters')
    head.append('note')
    lines = [
        f'Input 1x3x{meta["size"]}x{meta["size"]}, {meta["threads"]} threads, '
        f'device {meta["device"]}, median of {meta["runs"]} runs after '
        f'{meta["warmup"]} warm-up; {meta["date"]}, {meta["machine"]}, load '
        f'average before/after: {meta["load_before"]} / '
        f'{meta.get("load_after", "?")}.'
    ]
    if acc.get('kind') == 'toy mAP':
        lines.append(
            'toy mAP: bbox mAP (COCO-style, 0-1) on the toy val split '
            f'({acc["val_images"]} images) after {acc["minutes"]:g} min of '
            f'training from scratch per model ({acc["train_images"]} train '
            f'images, {acc["size"]}x{acc["size"]}, batch {acc["batch"]}, seed '
            f'{acc["seed"]}); iters: iterations the budget allowed.')
    elif acc.get('kind') == 'COCO AP':
        lines.append(
            f'COCO AP: box mAP (0-1) of the given checkpoints, MMDetection\'s '
            f'CocoMetric on the test set under {acc["root"]}.')
    lines += [
        '', '| ' + ' | '.join(head) + ' |',
        '|' + '|'.join(['---'] * len(head)) + '|'
    ]

    def fmt(v, spec):
        return '—' if v is None else format(v, spec)

    for r in results:
        cells = [
            r['label'],
            fmt(r.get('params', None) and r['params'] / 1e6, '.2f'),
            fmt(r.get('gflops'), '.1f'),
            fmt(_ms(r.get('eager')), '.1f'),
            fmt(_ms(r.get('ort')), '.1f')
        ]
        if has_fp16:
            cells.append(fmt(_ms(r.get('fp16')), '.1f'))
        if has_ap:
            cells.append(fmt(r.get('ap'), '.3f'))
        if has_iters:
            cells.append(fmt(_accuracy(r, 'iters'), 'd'))
        cells.append(row_note(r))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


ACCURACY_COLS = ('map50', 'iters', 'train_s', 'eval_images', 'eval_detections',
                 'ckpt_covered', 'ckpt_total')


def write_csv(results: List[Dict[str, Any]], path: str,
              meta: Dict[str, Any]) -> None:
    cols = [
        'label', 'config', 'status', 'params', 'gflops', 'grid_sampler_gflops',
        'ap', 'ap_kind'
    ]
    for b in ('eager', 'ort', 'fp16'):
        cols += [f'{b}_median_ms', f'{b}_p10_ms', f'{b}_p90_ms']
    cols += ['ort_export_s', *ACCURACY_COLS, 'note']
    kind = (meta.get('accuracy') or {}).get('kind') or meta.get('ap_name')
    with open(path, 'w', newline='') as f:
        wr = csv.writer(f)
        wr.writerow(cols)
        for r in results:
            row = [
                r.get('label'),
                r.get('config'),
                r.get('status'),
                r.get('params'),
                r.get('gflops'),
                r.get('grid_sampler_gflops'),
                r.get('ap'), kind if r.get('ap') is not None else None
            ]
            for b in ('eager', 'ort', 'fp16'):
                e = r.get(b) or {}
                row += [e.get('median_ms'), e.get('p10_ms'), e.get('p90_ms')]
            row += [r.get('ort_export_s')
                    ] + [_accuracy(r, k) for k in ACCURACY_COLS]
            row.append(row_note(r))
            wr.writerow(row)


def plot(results: List[Dict[str, Any]], path: str, meta: Dict[str,
                                                              Any]) -> None:
    """Latency vs accuracy, one labelled point per model (ORT latency where
    measured, else eager) when any model has an accuracy; else latency (both
    backends) vs GFLOPs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    use_ap = any(r.get('ap') is not None for r in results)
    if use_ap:  # the speed/accuracy chart: one line per family, labels apart
        return _plot_speed_accuracy(results, path, meta)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    left_out = []
    for backend, marker in (('ort', 'o'), ('eager', 's')):
        xs, ys, labels = [], [], []
        for r in results:
            y = r.get('ap') if use_ap else r.get('gflops')
            if use_ap and backend == 'eager' and _ms(r.get('ort')) is not None:
                continue  # one point per model: its ORT latency
            x = _ms(r.get(backend))
            if x is not None and y is not None:
                xs.append(x), ys.append(y), labels.append(r['label'])
            elif backend == 'eager' and r['label'] not in left_out:
                left_out.append(r['label'])
        if xs:  # zip below: xs, ys, labels are appended together
            ax.scatter(xs, ys, marker=marker, label=f'{backend} latency')
            # labels staggered in height: equal accuracies (e.g. 0 after a
            # short toy run) would otherwise print them on top of each other
            rank = {
                i: r
                for r, i in enumerate(
                    sorted(range(len(xs)), key=xs.__getitem__))
            }
            for i, (x, y, t) in enumerate(zip(xs, ys, labels)):
                ax.annotate(
                    t, (x, y),
                    textcoords='offset points',
                    xytext=(4, 3 + (9 * (rank[i] % 4) if use_ap else 0)),
                    fontsize=7)
    ax.set_xlabel(f'latency (ms, batch 1, {meta["size"]}x{meta["size"]}, '
                  f'{meta["device"]}, {meta["threads"]} threads)')
    ax.set_ylabel(
        meta.get('ap_name', 'AP') if use_ap else 'GFLOPs (multiply-adds)')
    ax.set_title(
        'D-FINE vs MMDetection detectors' +
        ('' if use_ap else ' (no accuracy)'),
        fontsize=10)
    ax.grid(alpha=0.3, which='both')
    if left_out:
        ax.text(
            0.01,
            0.01,
            'not plotted (no latency or accuracy): ' + ', '.join(left_out),
            transform=ax.transAxes,
            fontsize=6,
            va='bottom')
    if ax.collections:
        # latencies (and GFLOPs) span two orders of magnitude: log axes keep
        # the small models' labels apart
        ax.set_xscale('log')
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if not use_ap:
            ax.set_yscale('log')
        else:  # accuracies near 0 after a short toy run: keep 0 in view
            ys = [r['ap'] for r in results if r.get('ap') is not None]
            ax.set_ylim(min(0.0, min(ys)) - 0.02, max(0.05, 1.15 * max(ys)))
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5, 0.5, 'no model measured', ha='center', transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_speed_accuracy(results: List[Dict[str, Any]], path: str,
                         meta: Dict[str, Any]) -> None:
    """Accuracy vs latency (ORT where measured, else eager) with
    :mod:`dfine_mmdet.benchmark.speed_accuracy_chart`."""
    from dfine_mmdet.benchmark import speed_accuracy_chart
    points, left_out, backends = [], [], set()
    for r in results:
        backend = 'ort' if _ms(r.get('ort')) is not None else 'eager'
        if _ms(r.get(backend)) is None or r.get('ap') is None:
            left_out.append(r['label'])
            continue
        backends.add({
            'ort': 'ONNX Runtime',
            'eager': 'PyTorch eager'
        }[backend])
        points.append(
            dict(label=r['label'], latency_ms=_ms(r[backend]), ap=r['ap']))
    size = meta['size']
    xlabel = (
        f'latency, ms (log scale; {" / ".join(sorted(backends)) or "-"}, '
        f'{meta["device"]}, batch 1, {size}x{size}, {meta["threads"]} threads)'
    )
    footnote = (
        f'latency measured {meta["date"]} on {meta["machine"]}, median of '
        f'{meta["runs"]} runs, load average before/after '
        f'{meta["load_before"]} / {meta.get("load_after", "?")}')
    if meta.get('ap_sources'):
        footnote += '; AP: ' + '; '.join(
            sorted(set(meta['ap_sources'].values())))
    speed_accuracy_chart.plot(
        points,
        path,
        xlabel=xlabel,
        ylabel=meta.get('ap_name', 'AP'),
        title='Speed vs accuracy' + (' (published AP, latency measured here)'
                                     if meta.get('ap_sources') else ''),
        footnote=footnote,
        left_out=left_out)


def machine_meta(args) -> Dict[str, Any]:
    import torch
    try:
        load = ' '.join(f'{x:.2f}' for x in os.getloadavg())
    except OSError:
        load = '?'
    machine = (f'{platform.processor() or platform.machine()}, '
               f'{os.cpu_count()} CPUs, torch {torch.__version__}')
    return dict(
        size=args.size,
        threads=args.threads,
        device=args.device,
        runs=args.runs,
        warmup=args.warmup,
        date=datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC'),
        machine=machine,
        load_before=load)


# ------------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'configs',
        nargs='*',
        help='configs (LABEL=CFG to name a row); '
        'default: the default set')
    parser.add_argument('--size', type=int, default=640)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--measure',
        nargs='*',
        default=['flops', 'eager', 'ort', 'fp16'],
        choices=['flops', 'eager', 'ort', 'fp16'])
    parser.add_argument(
        '--timeout', type=float, default=900, help='seconds per model')
    accuracy = parser.add_mutually_exclusive_group()
    accuracy.add_argument(
        '--ap',
        nargs='*',
        default=None,
        metavar='LABEL=AP',
        help='accuracy to plot against: alone, the published COCO AP of '
        'every model in dfine_mmdet/benchmark/published_ap.py; LABEL=AP '
        'supplies or overrides a value')
    accuracy.add_argument(
        '--toy-minutes',
        type=float,
        default=None,
        metavar='M',
        help='train every model for M minutes (wall clock) on the toy set '
        'and report its toy mAP and iterations')
    accuracy.add_argument(
        '--coco-root',
        default=None,
        metavar='DIR',
        help='COCO box AP of the --checkpoints on the test set under DIR '
        '(annotations/instances_val2017.json, val2017/ for COCO configs)')
    parser.add_argument(
        '--ap-name',
        default=None,
        help='y-axis name for --ap (default: says published or given)')
    parser.add_argument(
        '--checkpoints',
        nargs='*',
        default=[],
        metavar='LABEL=CKPT',
        help='checkpoint per model for --coco-root')
    parser.add_argument(
        '--toy-data',
        default=None,
        help='toy set dir (written by tools/make_toy_dataset.py when absent; '
        'default <out-dir>/toy_data)')
    parser.add_argument(
        '--toy-size',
        type=int,
        default=256,
        help='toy training/eval image size (default 256: the smallest at '
        'which D-FINE-N has >= 300 memory tokens for its 300 queries)')
    parser.add_argument('--toy-batch', type=int, default=4)
    parser.add_argument(
        '--toy-images',
        type=int,
        nargs=2,
        default=[128, 32],
        metavar=('TRAIN', 'VAL'),
        help='images of the toy set written when --toy-data holds none')
    parser.add_argument(
        '--toy-warmup',
        type=int,
        default=20,
        help='linear LR warm-up iterations (common to all models)')
    parser.add_argument(
        '--seed', type=int, default=0, help='toy data and training seed')
    parser.add_argument('--out-dir', default='work_dirs/compare')
    parser.add_argument('--verbose', action='store_true')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    parser.add_argument('--checkpoint', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def model_list(configs: List[str]):
    if not configs:
        return list(DEFAULT_SET)
    out = []
    for c in configs:
        if '=' in c:
            label, cfg = c.split('=', 1)
        else:
            cfg = c
            label = osp.splitext(osp.basename(c.split('::')[-1]))[0]
        out.append((label, cfg))
    return out


def _checkpoint_map(args, models) -> Dict[str, str]:
    """``--checkpoints LABEL=CKPT`` as a dict (absolute paths); checks the
    labels."""
    ckpts = {}
    for item in args.checkpoints:
        if '=' not in item:
            raise SystemExit(f'--checkpoints expects LABEL=CKPT, got {item!r}')
        k, v = item.split('=', 1)
        ckpts[k] = osp.abspath(v)
    unknown = set(ckpts) - {m[0] for m in models}
    if unknown:
        raise SystemExit(
            f'--checkpoints names unknown models: {sorted(unknown)} '
            f'(models: {[m[0] for m in models]})')
    if ckpts and not args.coco_root:
        raise SystemExit('--checkpoints needs --coco-root')
    return ckpts


def toy_meta(args) -> Dict[str, Any]:
    """Writes the toy set when ``--toy-data`` holds none; its settings for the
    JSON."""
    args.toy_data = osp.abspath(
        args.toy_data or osp.join(args.out_dir, 'toy_data'))
    counts = {}
    for split in ('train', 'val'):
        ann = osp.join(args.toy_data, 'annotations', f'instances_{split}.json')
        if not osp.isfile(ann):
            from dfine_mmdet.benchmark.toy_data import make_toy_dataset
            print(
                f'writing the toy set to {args.toy_data} (seed {args.seed})',
                flush=True)
            make_toy_dataset(args.toy_data, args.seed, args.toy_images[0],
                             args.toy_images[1])
        with open(ann) as f:
            counts[split] = len(json.load(f)['images'])
    return dict(
        kind='toy mAP',
        minutes=args.toy_minutes,
        size=args.toy_size,
        batch=args.toy_batch,
        warmup_iters=args.toy_warmup,
        seed=args.seed,
        data=args.toy_data,
        train_images=counts['train'],
        val_images=counts['val'])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    models = model_list(args.configs)
    aps, ap_sources = {}, {}
    if args.ap is not None and not args.ap:  # `--ap` alone: published values
        from dfine_mmdet.benchmark.published_ap import lookup
        for label, cfg in models:
            entry = lookup(label, cfg)
            if entry is not None:
                aps[label], ap_sources[label] = entry.ap, entry.source
    for item in args.ap or []:
        if '=' not in item:
            raise SystemExit(f'--ap expects LABEL=AP, got {item!r}')
        k, v = item.split('=', 1)
        aps[k] = float(v)
    unknown = set(aps) - {m[0] for m in models}
    if unknown:
        raise SystemExit(f'--ap names unknown models: {sorted(unknown)}')
    args.checkpoints = _checkpoint_map(args, models)
    for label, cfg in models:
        resolve_config(cfg)  # fail early with the name of a missing config
    os.makedirs(args.out_dir, exist_ok=True)
    meta = machine_meta(args)
    meta['ap_name'] = args.ap_name or ('COCO val2017 box AP (%), published' if
                                       ap_sources else 'COCO box AP (given)')
    if ap_sources:
        meta['ap_sources'] = ap_sources
    if args.toy_minutes is not None:
        if args.toy_minutes <= 0:
            raise SystemExit(
                f'--toy-minutes must be > 0, got {args.toy_minutes}')
        meta['accuracy'] = toy_meta(args)
        meta['ap_name'] = f'toy mAP after {args.toy_minutes:g} min of training'
    elif args.coco_root:
        if not osp.isdir(args.coco_root):
            raise SystemExit(
                f'--coco-root {args.coco_root}: no such directory')
        args.coco_root = osp.abspath(args.coco_root)
        meta['accuracy'] = dict(kind='COCO AP', root=args.coco_root)
        meta['ap_name'] = 'COCO box AP (--coco-root)'
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, cfg) in enumerate(models):
            print(f'[{i + 1}/{len(models)}] {label} ({cfg}) ...', flush=True)
            r = run_one(label, cfg, args, tmp, i)
            if label in aps:
                r['ap'] = aps[label]
            elif args.ap is not None:
                r['errors'] = dict(
                    r.get('errors') or {},
                    ap='no published AP (give LABEL=AP)')
            print(f'    {r.get("status")}, {r["wall_s"]:.0f} s', flush=True)
            results.append(r)
    meta['load_after'] = ' '.join(f'{x:.2f}' for x in os.getloadavg())
    table = markdown_table(results, meta)
    print(table)
    with open(osp.join(args.out_dir, 'compare.md'), 'w') as f:
        f.write(table)
    with open(osp.join(args.out_dir, 'compare.json'), 'w') as f:
        json.dump(dict(meta=meta, models=results), f, indent=1)
    write_csv(results, osp.join(args.out_dir, 'compare.csv'), meta)
    plot(results, osp.join(args.out_dir, 'compare.png'), meta)
    print(f'written: {args.out_dir}/compare.{{md,json,csv,png}}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
