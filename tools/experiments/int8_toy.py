"""INT8 (opt-in) against FP32: toy-set mAP of one trained model, and CPU
latency at 640 next to the official export recipe, in one run.

Usage::

    # accuracy: a D-FINE-N trained on the toy set
    # (tools/experiments/toy_train.py --iters N --work-dir W writes
    # W/iter_N.pth), evaluated on its val split
    python tools/experiments/int8_toy.py --checkpoint W/iter_1300.pth \
        --data W/toy_data --skip-latency
    # latency: N and S at 640, random weights, 2 threads
    python tools/experiments/int8_toy.py --data W/toy_data --skip-map

Accuracy part (``--checkpoint``): the toy config
(``configs/dfine/toy/dfine_hgnetv2_n_toy.py``) is exported with the static
ONNX Runtime deploy config at the toy input size (128x128), quantised by
:mod:`dfine_mmdet.deploy.quantize` with ``--num-calib`` images of the toy
*train* split (run through the test pipeline and data preprocessor), once
per ``--scopes`` entry, and every graph is evaluated on the toy *val* split
with the config's ``CocoMetric`` through MMDeploy's ``End2EndModel``: FP32
in ONNX Runtime and OpenVINO, each INT8 graph in ONNX Runtime and OpenVINO.

Latency part: the paths of :mod:`dfine_mmdet.benchmark.inference_paths`
(plugin FP32 graph and the official exporter's recipe, each in ORT and
OpenVINO; eager PyTorch with ``--eager``) plus ``plugin-int8-ort`` /
``plugin-int8-openvino`` (the plugin graph quantised with scope
``--latency-scopes``, calibrated on ``--num-calib`` toy images resized to 640
by the COCO config's test pipeline), timed interleaved with the same thread
count. Printed: the table with ratios to the fastest, then ``int8 / fp32`` of
the same runtime and ``best int8 / best official``.
"""
import argparse
import glob
import os
import os.path as osp
import sys
import tempfile

from dfine_mmdet.benchmark import inference_paths as ip
from dfine_mmdet.benchmark.models import REPO_ROOT
from dfine_mmdet.benchmark.timing import time_interleaved

TOY_CONFIG = osp.join(REPO_ROOT, 'configs', 'dfine', 'toy',
                      'dfine_hgnetv2_n_toy.py')
ORT_STATIC = osp.join(REPO_ROOT, 'configs', 'deploy',
                      'detection_onnxruntime_static-640x640.py')
OV_STATIC = osp.join(REPO_ROOT, 'configs', 'deploy',
                     'detection_openvino_static-640x640.py')


def toy_images(data_dir: str, split: str, n: int):
    files = sorted(glob.glob(osp.join(data_dir, split, '*')))
    if len(files) < n:
        raise SystemExit(f'--data {data_dir}: {split}/ holds {len(files)} '
                         f'images, {n} needed (tools/make_toy_dataset.py '
                         'writes the toy set)')
    return files[:n]


def toy_configs(data_dir: str, size: int):
    """Model config pointed at ``data_dir`` (batch 1) and the static ORT /
    OpenVINO deploy configs at ``size`` x ``size``."""
    from mmdeploy.utils import load_config
    from mmengine.config import Config
    cfg = Config.fromfile(TOY_CONFIG)
    root = data_dir.rstrip('/') + '/'
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = root
        loader.batch_size = 1
    cfg.val_evaluator.ann_file = root + 'annotations/instances_val.json'
    cfg.test_evaluator = cfg.val_evaluator
    deploy = {}
    for name, path in (('onnxruntime', ORT_STATIC), ('openvino', OV_STATIC)):
        d = load_config(path)[0]
        d.onnx_config.input_shape = [size, size]
        if name == 'openvino':
            d.backend_config.model_inputs = [
                dict(opt_shapes=dict(input=[1, 3, size, size]))
            ]
        deploy[name] = d
    return cfg, deploy


def evaluate(model_cfg, deploy_cfg, backend_file: str) -> dict:
    """COCO bbox metrics of ``backend_file`` on the test split of
    ``model_cfg`` (MMDeploy ``End2EndModel``, boxes rescaled to the
    original image)."""
    from mmengine.evaluator import Evaluator

    from dfine_mmdet.deploy.export import build_task_processor_cpu
    tp = build_task_processor_cpu(model_cfg, deploy_cfg)
    model = tp.build_backend_model([backend_file], tp.update_data_preprocessor)
    loader = tp.build_dataloader(model_cfg.test_dataloader)
    evaluator = Evaluator(model_cfg.test_evaluator)
    evaluator.dataset_meta = loader.dataset.metainfo
    for batch in loader:
        outputs = model.test_step(batch)
        evaluator.process(data_samples=outputs, data_batch=batch)
    return evaluator.evaluate(len(loader.dataset))


def run_map(args, work_dir: str):
    from dfine_mmdet.deploy.export import export_onnx
    from dfine_mmdet.deploy.quantize import (calibration_inputs,
                                             onnx_to_openvino_ir,
                                             quantize_onnx)
    cfg, deploy = toy_configs(args.data, args.toy_size)
    val0 = toy_images(args.data, 'val', 1)[0]
    fp32 = export_onnx(val0, work_dir, 'fp32.onnx', deploy['onnxruntime'], cfg,
                       args.checkpoint)
    calib = calibration_inputs(deploy['onnxruntime'], cfg,
                               toy_images(args.data, 'train', args.num_calib))
    graphs = [('fp32', fp32)]
    for scope in args.scopes:
        int8 = osp.join(work_dir, f'int8_{scope}.onnx')
        info = quantize_onnx(fp32, int8, calib, scope=scope)
        print(f'int8 scope {scope}: {info}', flush=True)
        graphs.append((f'int8 {scope}', int8))
    import importlib.util
    backends = ['onnxruntime']
    if importlib.util.find_spec('openvino') is not None:
        backends.append('openvino')
    else:
        print('openvino is not installed: ONNX Runtime only')
    rows = []
    for name, onnx_file in graphs:
        for backend in backends:
            f = onnx_file if backend == 'onnxruntime' else \
                onnx_to_openvino_ir(onnx_file)
            m = evaluate(cfg, deploy[backend], f)
            rows.append(
                (name, backend, m['coco/bbox_mAP'], m['coco/bbox_mAP_50']))
            print(
                f'{name:22s} {backend:12s} bbox mAP {rows[-1][2]:.3f}  '
                f'mAP@0.5 {rows[-1][3]:.3f}',
                flush=True)
    ref = {b: (m, m50) for n, b, m, m50 in rows if n == 'fp32'}
    print(f'\ntoy val split '
          f'({len(glob.glob(osp.join(args.data, "val", "*")))} images), '
          f'{args.num_calib} calibration images from train/, input '
          f'{args.toy_size}x{args.toy_size}')
    print('| graph | runtime | bbox mAP | mAP@0.5 | change vs fp32 '
          '(same runtime) |\n|---|---|---:|---:|---:|')
    for name, backend, m, m50 in rows:
        d = m - ref[backend][0]
        print(f'| {name} | {backend} | {m:.3f} | {m50:.3f} | '
              f'{d:+.3f} |')
    return rows


def run_latency(args, work_dir: str):
    import torch

    from dfine_mmdet.deploy.quantize import calibration_inputs, quantize_onnx
    coco_cfgs = {
        v: osp.join(REPO_ROOT, 'configs', 'dfine',
                    f'dfine_hgnetv2_{v}_coco.py')
        for v in args.variants
    }
    skip = [] if args.eager else ['torch-eager', 'torch-eager-fused']
    for variant in args.variants:
        paths = ip.build_paths(variant, args.size, args.threads, work_dir,
                               None, skip)
        plugin_onnx = osp.join(work_dir, f'{variant}_plugin.onnx')
        from mmdeploy.utils import load_config
        d = load_config(ORT_STATIC)[0]
        d.onnx_config.input_shape = [args.size, args.size]
        calib = calibration_inputs(
            d, coco_cfgs[variant],
            toy_images(args.data, 'train', args.num_calib))
        torch.manual_seed(0)
        feed = {'input': torch.rand(1, 3, args.size, args.size).numpy()}
        for k, scope in enumerate(args.latency_scopes):
            int8 = osp.join(work_dir, f'{variant}_plugin_int8_{scope}.onnx')
            info = quantize_onnx(plugin_onnx, int8, calib, scope=scope)
            print(
                f'D-FINE-{variant.upper()} int8 ({scope}): {info}', flush=True)
            tag = 'plugin-int8' if k == 0 else f'plugin-int8:{scope}'
            paths[f'{tag}-ort'] = ip.ort_runner(int8, feed, args.threads)
            if 'plugin-openvino' in paths:  # openvino installed, not skipped
                paths[f'{tag}-openvino'] = ip.openvino_runner(
                    int8, feed, args.threads)
        load = os.getloadavg()
        times = time_interleaved(paths, args.rounds, args.warmup, args.runs)
        rows = ip.path_rows(times)
        print(ip.format_path_table(variant, rows))
        med = {r['path']: r['median_ms'] for r in rows}
        for name, ms in med.items():
            if 'int8' in name:
                rt = name.rsplit('-', 1)[1]
                print(f'{name} / plugin-{rt} (fp32): '
                      f'{ms / med[f"plugin-{rt}"]:.2f}x')
        best_int8 = min(v for k, v in med.items() if 'int8' in k)
        best_off = min(v for k, v in med.items() if k.startswith('official'))
        print(
            f'best int8 / best official fp32: '
            f'{best_int8 / best_off:.2f}x  (load average before '
            f'{load[0]:.2f}, after {os.getloadavg()[0]:.2f})',
            flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--data',
        required=True,
        help='toy set (tools/make_toy_dataset.py --out DIR)')
    parser.add_argument(
        '--checkpoint',
        default=None,
        help='trained toy D-FINE-N (required unless '
        '--skip-map)')
    parser.add_argument('--num-calib', type=int, default=8)
    parser.add_argument(
        '--scopes', nargs='+', default=['all', 'no-heads', 'backbone-neck'])
    parser.add_argument('--toy-size', type=int, default=128)
    parser.add_argument('--skip-map', action='store_true')
    parser.add_argument('--skip-latency', action='store_true')
    parser.add_argument('--variants', nargs='+', default=['n', 's'])
    parser.add_argument('--size', type=int, default=640)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument(
        '--latency-scopes',
        nargs='+',
        default=['no-heads'],
        help='INT8 graphs to time (the first is named '
        'plugin-int8-*, the others plugin-int8:SCOPE-*)')
    parser.add_argument(
        '--eager', action='store_true', help='also time PyTorch eager (slow)')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--work-dir', default=None)
    args = parser.parse_args(argv)
    if not args.skip_map and not args.checkpoint:
        parser.error('--checkpoint is required unless --skip-map')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401  (rewriters, shims)
    init_default_scope('mmdet')
    print(
        f'{args.threads} threads, load average {os.getloadavg()}', flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = args.work_dir or tmp
        os.makedirs(work_dir, exist_ok=True)
        if not args.skip_map:
            run_map(args, work_dir)
        if not args.skip_latency:
            run_latency(args, work_dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
