"""Opt-in INT8 post-training quantisation of a D-FINE deployment.

``tools/deploy.py`` always writes FP32 graphs; this tool adds an INT8 copy
next to them (method and scopes: :mod:`dfine_mmdet.deploy.quantize`):

1. the FP32 end-to-end ONNX graph (``--onnx`` to reuse one written by
   ``tools/deploy.py`` with the same deploy config; else it is exported here,
   on CPU);
2. calibration inputs: ``--calib`` images (files or folders; the first
   ``--num-calib``) through the model's test pipeline and data
   preprocessor at the deploy config's input shape;
3. ``end2end_int8.onnx`` (QDQ; runs in ONNX Runtime and OpenVINO) and, with
   an ``openvino`` deploy config, ``end2end_int8.xml`` / ``.bin``;
4. ``--check``: FP32 and INT8 through MMDeploy's backend model on the
   calibration images; prints, per image, how many FP32 detections above
   ``--score-thr`` have an INT8 detection of the same label with IoU >= 0.5,
   their mean IoU and the largest score change (INT8 cannot meet the FP32
   ``--check`` tolerances of ``tools/deploy.py``); exits 1 when fewer than
   ``--min-agree`` of them agree, 2 when no FP32 detection is above
   ``--score-thr`` (nothing compared).

Portability across x86 CPUs: the weights are quantised to 7 bits by default
(ONNX Runtime's ``reduce_range``), so that the ``uint8 x int8`` kernels of
CPUs without VNNI (AVX2 only: AMD Zen 2/3, Intel before Ice Lake; AVX-512
without VNNI) cannot saturate: ONNX Runtime computes the same on every x86-64
CPU, OpenVINO the same up to rounding. The export log says what this CPU
has and proves the bound on the written file
(:func:`dfine_mmdet.deploy.quantize.int8_saturation_report`); ``--check``
fails when the bound does not hold. ``--full-range-weights``
opts into 8-bit weights (one more bit; exact only on CPUs with VNNI/AMX,
which ``--check`` then requires of this CPU and says so).
``--check-cpu EPYC-Milan`` repeats the agreement check with the INT8 graph
run on an emulated CPU (QEMU user mode, ``apt-get install qemu-user``;
:mod:`dfine_mmdet.deploy.emulated_cpu`) and reports how far its detections
are from this CPU's; slow (about a minute per image at 640).

Example::

    python tools/deploy_int8.py \
        configs/deploy/detection_openvino_static-640x640.py \
        configs/dfine/dfine_hgnetv2_n_coco.py dfine_n_coco_mmdet.pth \
        --calib data/coco/train2017 --num-calib 32 \
        --work-dir work_dirs/dfine_n_ov_int8 --check
"""
import argparse
import glob
import os
import os.path as osp
import sys

IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


def parse_args(argv=None):
    from dfine_mmdet.deploy.quantize import DEFAULT_SCOPE, SCOPES
    parser = argparse.ArgumentParser(
        description='INT8 post-training quantisation of a D-FINE export '
        '(opt-in; tools/deploy.py stays FP32)')
    parser.add_argument(
        'deploy_cfg',
        help='configs/deploy/detection_{onnxruntime,'
        'openvino}_*.py')
    parser.add_argument('model_cfg', help='D-FINE model config')
    parser.add_argument(
        'checkpoint',
        help='mmdet-format checkpoint (`none`: random '
        'weights, for timing only)')
    parser.add_argument(
        '--calib',
        nargs='+',
        required=True,
        help='calibration image files and/or folders')
    parser.add_argument(
        '--num-calib',
        type=int,
        default=32,
        help='use the first N images (sorted)')
    parser.add_argument(
        '--scope',
        default=DEFAULT_SCOPE,
        choices=SCOPES,
        help='which layers are quantised (see '
        'dfine_mmdet/deploy/quantize.py)')
    parser.add_argument(
        '--onnx',
        default=None,
        help='existing FP32 end2end.onnx of this deploy '
        'config (skips the export)')
    parser.add_argument('--work-dir', default='work_dirs/deploy_int8')
    parser.add_argument('--check', action='store_true')
    parser.add_argument('--score-thr', type=float, default=0.3)
    parser.add_argument(
        '--min-agree',
        type=float,
        default=0.8,
        help='--check: smallest fraction of FP32 detections '
        'with an INT8 partner')
    parser.add_argument(
        '--full-range-weights',
        action='store_true',
        help='8-bit weights instead of 7-bit: more precise, '
        'but results differ on CPUs without VNNI (saturating '
        'int16 pair sums); only for VNNI/AMX targets')
    parser.add_argument(
        '--check-cpu',
        nargs='+',
        default=[],
        metavar='QEMU_CPU',
        help='--check: also run the INT8 graph on these '
        'emulated CPUs (qemu-x86_64 -cpu NAME, e.g. '
        'EPYC-Milan = Zen 3, AVX2 without VNNI)')
    return parser.parse_args(argv)


def collect_images(items, n):
    files = []
    for item in items:
        if osp.isdir(item):
            files += sorted(
                f for f in glob.glob(osp.join(item, '*'))
                if f.lower().endswith(IMG_EXTS))
        elif osp.isfile(item):
            files.append(item)
        else:
            sys.exit(f'error: --calib {item}: no such file or folder')
    if not files:
        sys.exit(f'error: --calib {" ".join(items)}: no images '
                 f'({", ".join(IMG_EXTS)})')
    return files[:n]


def box_iou(a, b):
    """IoU matrix of ``a [N, 4]`` and ``b [M, 4]`` (xyxy)."""
    import numpy as np
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def agreement(ref, test, score_thr):
    """How well ``test`` detections reproduce the ``ref`` ones.

    Args:
        ref, test: ``(bboxes [K, 4], scores [K], labels [K])`` numpy arrays
            of one image.
        score_thr (float): only reference detections above it count.

    Returns:
        dict: ``num_ref`` (above the threshold), ``agree`` (those with a
        same-label test detection at IoU >= 0.5), ``mean_iou`` (best IoU
        with a same-label test detection, averaged), ``max_score_change``
        (score difference to that detection).
    """
    import numpy as np
    rb, rs, rl = ref
    tb, ts, tl = test
    keep = rs > score_thr
    rb, rs, rl = rb[keep], rs[keep], rl[keep]
    if not len(rs):
        return dict(
            num_ref=0, agree=0, mean_iou=float('nan'), max_score_change=0.0)
    iou = box_iou(rb, tb) * (rl[:, None] == tl[None, :])
    best = iou.argmax(1)
    best_iou = iou[np.arange(len(rs)), best]
    return dict(
        num_ref=int(len(rs)),
        agree=int((best_iou >= 0.5).sum()),
        mean_iou=float(best_iou.mean()),
        max_score_change=float(np.abs(ts[best] - rs).max()))


def run_backend(deploy_cfg, model_cfg, backend_file, images):
    """``[(bboxes, scores, labels)]`` per image from MMDeploy's backend
    model (boxes in original-image pixels)."""
    from mmdeploy.utils import get_input_shape

    from dfine_mmdet.deploy.export import build_task_processor_cpu
    tp = build_task_processor_cpu(model_cfg, deploy_cfg)
    model = tp.build_backend_model([backend_file], tp.update_data_preprocessor)
    out = []
    for img in images:
        data, _ = tp.create_input(img, get_input_shape(deploy_cfg))
        inst = model.test_step(data)[0].pred_instances
        out.append(
            tuple(t.detach().cpu().numpy()
                  for t in (inst.bboxes, inst.scores, inst.labels)))
    return out


def run_graph(backend_file, arrays):
    """Raw graph outputs ``(dets [1, K, 5], labels [1, K])`` per input array
    (ONNX Runtime for ``.onnx``, OpenVINO FP32 for ``.xml``), one thread."""
    if backend_file.endswith('.xml'):
        import openvino as ov
        compiled = ov.Core().compile_model(
            backend_file, 'CPU',
            dict(INFERENCE_PRECISION_HINT='f32', INFERENCE_NUM_THREADS=1))
        return [[compiled(a)[o] for o in compiled.outputs] for a in arrays]
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        backend_file, opts, providers=['CPUExecutionProvider'])
    return [sess.run(None, {'input': a}) for a in arrays]


def _dets(outs):
    """``(bboxes, scores, labels)`` of image 0 of raw graph outputs."""
    dets, labels = outs[0], outs[1]
    return dets[0, :, :4], dets[0, :, 4], labels[0]


def check_on_emulated_cpus(files, arrays, cpus, score_thr, min_agree):
    """``--check-cpu``: the INT8 graph on each emulated CPU against the FP32
    graph on this one (graph outputs, input-tensor pixels); also the
    largest box difference to the INT8 graph on this CPU. Returns False
    when a CPU falls below ``min_agree``."""
    import numpy as np

    from dfine_mmdet.deploy.emulated_cpu import run_on_cpu
    ref = [_dets(o) for o in run_graph(files['fp32'], arrays)]
    here = [_dets(o) for o in run_graph(files['int8'], arrays)]
    backend = 'openvino' if files['int8'].endswith('.xml') else \
        'onnxruntime'
    ok = True
    for cpu in cpus:
        outs, info = run_on_cpu(files['int8'], arrays, cpu, backend=backend)
        emu = [_dets(o) for o in outs]
        total = agree = 0
        for r, t in zip(ref, emu, strict=True):
            a = agreement(r, t, score_thr)
            total += a['num_ref']
            agree += a['agree']
        frac = agree / total if total else 1.0
        diff = max(
            float(np.abs(h[0] - e[0]).max())
            for h, e in zip(here, emu, strict=True))
        print(f'--check-cpu {cpu} (emulated; VNNI: '
              f'{"yes" if info["vnni"] else "no"}, AVX2: '
              f'{"yes" if info["features"].get("AVX2") else "no"}): '
              f'{agree}/{total} = {frac:.2f} agree with FP32; INT8 boxes '
              f'differ from this CPU\'s by up to {diff:.3g} px')
        ok &= frac >= min_agree
    return ok


def main(argv=None):
    args = parse_args(argv)
    from mmdeploy.utils import get_backend, get_ir_config, load_config

    import dfine_mmdet  # noqa: F401  (rewriters, symbolics and shims)
    from dfine_mmdet.deploy.export import export_onnx
    from dfine_mmdet.deploy.quantize import (calibration_inputs,
                                             cpu_int8_features,
                                             describe_int8_portability,
                                             onnx_to_openvino_ir,
                                             quantize_onnx)
    for path, what in ((args.deploy_cfg, 'deploy config'), (args.model_cfg,
                                                            'model config')):
        if not osp.isfile(path):
            sys.exit(f'error: {what} not found: {path}')
    deploy_cfg, model_cfg = load_config(args.deploy_cfg, args.model_cfg)
    backend = get_backend(deploy_cfg).value
    if backend not in ('onnxruntime', 'openvino'):
        sys.exit(f'error: {args.deploy_cfg}: backend {backend}; INT8 here '
                 'is for the onnxruntime / openvino CPU configs')
    checkpoint = None if args.checkpoint.lower() == 'none' else \
        args.checkpoint
    if checkpoint is not None and not osp.isfile(checkpoint):
        sys.exit(f'error: checkpoint not found: {checkpoint}')
    if args.check_cpu:
        from dfine_mmdet.deploy.emulated_cpu import QEMU, qemu_path
        if qemu_path() is None:
            sys.exit(f'error: --check-cpu needs {QEMU} on an x86-64 host '
                     '(Debian/Ubuntu: apt-get install qemu-user)')
    images = collect_images(args.calib, args.num_calib)
    os.makedirs(args.work_dir, exist_ok=True)

    if args.onnx:
        if not osp.isfile(args.onnx):
            sys.exit(f'error: --onnx {args.onnx}: no such file')
        fp32 = args.onnx
    else:
        fp32 = export_onnx(images[0], args.work_dir,
                           get_ir_config(deploy_cfg)['save_file'], deploy_cfg,
                           model_cfg, checkpoint)
    print(f'[1/3] FP32 graph: {fp32}')
    calib = calibration_inputs(deploy_cfg, model_cfg, images)
    print(f'[2/3] {len(calib)} calibration input(s) '
          f'{list(calib[0].shape)} from {len(images)} image(s)')
    base = osp.splitext(osp.basename(fp32))[0]
    int8 = osp.join(args.work_dir, f'{base}_int8.onnx')
    info = quantize_onnx(
        fp32,
        int8,
        calib,
        scope=args.scope,
        reduce_range=not args.full_range_weights)
    files = dict(fp32=fp32, int8=int8)
    if backend == 'openvino':
        files = dict(
            fp32=onnx_to_openvino_ir(
                fp32, osp.join(args.work_dir, f'{base}_fp32.xml')),
            int8=onnx_to_openvino_ir(int8))
    print(f'[3/3] INT8 ({args.scope}): {files["int8"]} — '
          f'{info["quantised"]} layers quantised, {info["kept_fp32"]} kept '
          f'FP32, QuantizeLinear x{info["QuantizeLinear"]}, '
          f'DequantizeLinear x{info["DequantizeLinear"]}, '
          f'{"8" if args.full_range_weights else "7"}-bit weights')
    features = cpu_int8_features()
    print(f'      x86 int8 portability: '
          f'{describe_int8_portability(info, features)}')
    if not args.check:
        return 0
    if not info['saturation_free']:
        if not args.full_range_weights:
            print('--check: FAIL, the INT8 weights exceed the 7-bit bound '
                  f'in {info["layers_at_risk"][:5]}')
            return 1
        if features['vnni'] is None:
            print('--check: full-range weights on a CPU whose int8 '
                  'features are unknown: the agreement below may not hold '
                  'on CPUs without VNNI')
        elif not (features['vnni'] or features['amx_int8']):
            print('--check: FAIL, --full-range-weights on a CPU without '
                  'VNNI/AMX: its int8 kernels saturate on this file')
            return 1
        else:
            print('--check: full-range weights: the agreement below holds '
                  'on CPUs with VNNI/AMX only (this one has it)')
    ref = run_backend(deploy_cfg, model_cfg, files['fp32'], images)
    test = run_backend(deploy_cfg, model_cfg, files['int8'], images)
    total = agree = 0
    for img, r, t in zip(images, ref, test, strict=True):
        a = agreement(r, t, args.score_thr)
        total += a['num_ref']
        agree += a['agree']
        print(f'  {osp.basename(img)}: {a["agree"]}/{a["num_ref"]} FP32 '
              f'detections > {args.score_thr} kept (IoU >= 0.5, same '
              f'label), mean IoU {a["mean_iou"]:.3f}, largest score change '
              f'{a["max_score_change"]:.3f}')
    frac = agree / total if total else 1.0
    print(f'--check: {agree}/{total} = {frac:.2f} agree '
          f'(--min-agree {args.min_agree})')
    if total == 0:
        print('--check: no FP32 detection above --score-thr on these '
              'images, nothing was compared: lower --score-thr or use '
              'other --calib images')
        return 2
    ok = frac >= args.min_agree
    if args.check_cpu:
        ok &= check_on_emulated_cpus(files, calib, args.check_cpu,
                                     args.score_thr, args.min_agree)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
