"""Convert a D-FINE checkpoint to ONNX, an OpenVINO IR or a TensorRT engine
with MMDeploy.

The PyPI ``mmdeploy`` wheel (1.3.1) ships no ``tools/deploy.py``. This is
the D-FINE counterpart of MMDeploy's tool: the same arguments, the same
``mmdeploy.apis`` calls, plus the checks D-FINE needs.

1. ``torch2onnx`` with the deploy config. ``dfine_mmdet`` is imported first,
   which registers the D-FINE rewriters, the native GridSample /
   LayerNormalization symbolics, the ``dynamo=False`` shim and, when
   ``tensorrt`` is importable, the TensorRT >= 10 shims.
2. Static graph checks (:mod:`dfine_mmdet.deploy.graph_checks`): no
   custom-domain op; for TensorRT, only parser-supported ops and constant
   TopK K.
3. TensorRT backend: ``to_backend`` builds ``end2end.engine``, FP16 configs
   keeping the configured layers in FP32. A ``trtexec_cmd.sh`` with the
   equivalent ``trtexec`` command is always written. Without ``tensorrt``
   (or with ``--device cpu``) the tool stops after the ONNX file and prints
   how to build the engine. OpenVINO backend: ``to_backend`` converts the
   ONNX file to ``end2end.xml`` / ``.bin`` (FP32) through the shim in
   :mod:`dfine_mmdet.deploy.backends.openvino`.
4. ``--check``: runs the backend and PyTorch on the image(s), prints the
   largest box/score differences (``dfine_mmdet.deploy.verify``) and exits
   with status 1 when a detection found no partner or a difference exceeds
   ``--box-tol`` / ``--score-tol`` (defaults: 1e-2 px / 1e-4 for fp32
   backends, 2 px / 1e-2 for TensorRT FP16).

Examples::

    python tools/deploy.py \
        configs/deploy/detection_onnxruntime_static-640x640.py \
        configs/dfine/dfine_hgnetv2_n_coco.py dfine_n_coco_mmdet.pth \
        --img demo.jpg --work-dir work_dirs/dfine_n_ort --check

    python tools/deploy.py \
        configs/deploy/detection_tensorrt-fp16_static-640x640.py \
        configs/dfine/dfine_hgnetv2_n_coco.py dfine_n_coco_mmdet.pth \
        --img demo.jpg --work-dir work_dirs/dfine_n_trt16 --device cuda:0
"""
import argparse
import logging
import os
import os.path as osp
import sys

import numpy as np


def parse_args():
    parser = argparse.ArgumentParser(
        description='Export D-FINE with MMDeploy (ONNX / TensorRT)')
    parser.add_argument('deploy_cfg', help='configs/deploy/*.py')
    parser.add_argument('model_cfg', help='D-FINE model config')
    parser.add_argument(
        'checkpoint',
        help='mmdet-format checkpoint (tools/convert_official_ckpt.py '
        'output); `none` exports randomly initialised weights')
    parser.add_argument(
        '--img',
        nargs='+',
        default=None,
        help='image(s) used to trace (and for --check); default: a '
        'synthetic 480x640 image')
    parser.add_argument('--work-dir', default='work_dirs/deploy')
    parser.add_argument(
        '--device',
        default='cpu',
        help='device of the backend (cuda:0 for TensorRT); the ONNX export '
        'itself always runs on CPU')
    parser.add_argument(
        '--check',
        action='store_true',
        help='compare the backend with PyTorch on --img; exit 1 on a '
        'mismatch')
    parser.add_argument(
        '--box-tol',
        type=float,
        default=None,
        help='--check: largest box difference in original-image pixels '
        '(default 1e-2, TensorRT FP16 2.0)')
    parser.add_argument(
        '--score-tol',
        type=float,
        default=None,
        help='--check: largest score difference; also the window in which '
        'detections are paired (default 1e-4, TensorRT FP16 1e-2)')
    parser.add_argument(
        '--log-level',
        default='INFO',
        choices=['DEBUG', 'INFO', 'WARNING', 'ERROR'])
    return parser.parse_args()


def trtexec_command(onnx_file: str, deploy_cfg) -> str:
    """A ``trtexec`` command that builds the same engine as ``to_backend``.

    TensorRT's ONNX parser names each layer after its ONNX node, so the
    layers to keep in FP32 are the LayerNormalization / Softmax nodes (the
    ``fp32_layer_types`` NORMALIZATION / SOFTMAX) and the nodes matching
    ``fp32_layer_name_patterns``.
    """
    import re

    import onnx
    from mmdeploy.utils import get_common_config, get_model_inputs
    common = get_common_config(deploy_cfg)
    shapes = get_model_inputs(deploy_cfg)[0]['input_shapes']
    engine = osp.splitext(onnx_file)[0] + '.engine'
    cmd = ['trtexec', f'--onnx={onnx_file}', f'--saveEngine={engine}']
    for key, flag in (('min_shape', 'minShapes'), ('opt_shape', 'optShapes'),
                      ('max_shape', 'maxShapes')):
        spec = ','.join(f'{name}:' + 'x'.join(str(d) for d in s[key])
                        for name, s in shapes.items())
        cmd.append(f'--{flag}={spec}')
    if common.get('max_workspace_size'):
        mib = int(common['max_workspace_size']) >> 20
        cmd.append(f'--memPoolSize=workspace:{mib}M')
    if common.get('fp16_mode'):
        cmd.append('--fp16')
        onnx_ops = dict(NORMALIZATION='LayerNormalization', SOFTMAX='Softmax')
        op_types = {
            onnx_ops[t]
            for t in common.get('fp32_layer_types', []) if t in onnx_ops
        }
        patterns = [
            re.compile(p) for p in common.get('fp32_layer_name_patterns', [])
        ]
        names = [
            n.name for n in onnx.load(onnx_file).graph.node
            if n.op_type in op_types or any(
                p.search(n.name) for p in patterns)
        ]
        if names:
            spec = ','.join(f'{n}:fp32' for n in names)
            cmd += [
                '--precisionConstraints=obey', f'--layerPrecisions={spec}',
                f'--layerOutputTypes={spec}'
            ]
    return ' '.join(cmd)


def check_tolerances(deploy_cfg, box_tol=None, score_tol=None):
    """``(box_tol, score_tol)`` for ``--check``: the given values, else the
    defaults for the deploy config's precision (FP16 is looser)."""
    from mmdeploy.utils import get_common_config
    fp16 = bool(get_common_config(deploy_cfg).get('fp16_mode', False))
    return (box_tol if box_tol is not None else
            (2.0 if fp16 else 1e-2), score_tol if score_tol is not None else
            (1e-2 if fp16 else 1e-4))


def main():
    args = parse_args()
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import (get_backend, get_ir_config, get_root_logger,
                                load_config)

    import dfine_mmdet  # noqa: F401  (rewriters, symbolics and shims)
    from dfine_mmdet.deploy.backends import tensorrt as trt_shims
    from dfine_mmdet.deploy.deform_attn_sampler import deploy_sampler
    from dfine_mmdet.deploy.export import export_onnx
    from dfine_mmdet.deploy.graph_checks import check_graph

    logger = get_root_logger()
    logger.setLevel(getattr(logging, args.log_level))
    import torch
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print(f'--device {args.device}: CUDA is not available here, '
              'continuing with --device cpu')
        args.device = 'cpu'
    for path, what in ((args.deploy_cfg, 'deploy config'), (args.model_cfg,
                                                            'model config')):
        if not osp.isfile(path):
            sys.exit(f'error: {what} not found: {path}')
    deploy_cfg, model_cfg = load_config(args.deploy_cfg, args.model_cfg)
    codebase = deploy_cfg.get('codebase_config', {})
    if (codebase.get('type'), codebase.get('task')) != (
            'mmdet', 'ObjectDetection') or 'backend_config' not in deploy_cfg:
        hint = (' (it looks like a model config: the order is DEPLOY_CFG '
                'MODEL_CFG CHECKPOINT)' if 'model' in deploy_cfg else '')
        sys.exit(f'error: {args.deploy_cfg} is not an MMDeploy detection '
                 'deploy config: codebase_config type/task = '
                 f'{codebase.get("type")}/{codebase.get("task")}, expected '
                 f'mmdet/ObjectDetection with a backend_config{hint}; use '
                 'configs/deploy/*.py')
    backend = get_backend(deploy_cfg).value
    checkpoint = None if args.checkpoint.lower() == 'none' else \
        args.checkpoint
    if checkpoint is not None and not osp.isfile(checkpoint):
        sys.exit(f'error: checkpoint not found: {checkpoint}')
    if args.img is None:
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)]
    else:
        imgs = args.img
    os.makedirs(args.work_dir, exist_ok=True)

    save_file = get_ir_config(deploy_cfg)['save_file']
    onnx_file = osp.join(args.work_dir, save_file)
    if backend == 'tensorrt' and not args.device.startswith('cuda'):
        # mmdeploy's torch2onnx refuses device=cpu for TensorRT configs;
        # the same export steps without that check (graph only)
        print(f'[1/3] export_onnx (CPU, TensorRT graph) -> {onnx_file}')
        export_onnx(imgs[0], args.work_dir, save_file, deploy_cfg, model_cfg,
                    checkpoint)
    else:
        print(f'[1/3] torch2onnx -> {onnx_file}')
        torch2onnx(imgs[0], args.work_dir, save_file, deploy_cfg, model_cfg,
                   checkpoint, args.device)

    report = check_graph(onnx_file, backend)
    print(f'[2/3] graph check ({backend}): '
          f'{sum(report["op_counts"].values())} nodes, '
          'deformable attention sampler: '
          f'{deploy_sampler(deploy_cfg, "grid_sample")}, '
          f'GridSample x{report["op_counts"].get("GridSample", 0)}, '
          f'LayerNormalization x'
          f'{report["op_counts"].get("LayerNormalization", 0)}, '
          f'custom ops: {report["custom_ops"] or "none"}')
    if not report['ok']:
        raise RuntimeError(f'exported graph is not deployable on {backend}: '
                           f'{report}')

    backend_files = [onnx_file]
    if backend == 'tensorrt':
        cmd = trtexec_command(onnx_file, deploy_cfg)
        cmd_file = osp.join(args.work_dir, 'trtexec_cmd.sh')
        with open(cmd_file, 'w') as f:
            f.write(cmd + '\n')
        no_engine = None
        if trt_shims.tensorrt_version() is None:
            no_engine = ('tensorrt is not importable here: wrote the ONNX '
                         'file only. On a machine with TensorRT and a GPU, '
                         'rerun this command with --device cuda:0, or run '
                         f'{cmd_file}')
        elif not args.device.startswith('cuda'):
            no_engine = ('--device cpu: wrote the ONNX file only; build the '
                         f'engine with --device cuda:0 or {cmd_file}')
        if no_engine:
            print(f'[3/3] {no_engine}')
            if args.check:
                print('--check skipped: there is no TensorRT engine to run')
            return
        print('[3/3] building the TensorRT engine')
        backend_files = to_backend(
            backend, [onnx_file],
            work_dir=args.work_dir,
            deploy_cfg=deploy_cfg,
            log_level=logger.level,
            device=args.device)
        print(f'      wrote {backend_files}')
    elif backend == 'openvino':
        print('[3/3] converting to an OpenVINO IR (FP32)')
        backend_files = to_backend(
            backend, [onnx_file],
            work_dir=args.work_dir,
            deploy_cfg=deploy_cfg,
            log_level=logger.level,
            device='cpu')
        print(f'      wrote {backend_files}')
    else:
        print('[3/3] onnxruntime backend: the ONNX file is the deployable')

    if args.check:
        from dfine_mmdet.deploy.verify import compare_with_pytorch
        box_tol, score_tol = check_tolerances(deploy_cfg, args.box_tol,
                                              args.score_tol)
        reports = compare_with_pytorch(deploy_cfg, model_cfg, checkpoint,
                                       backend_files, imgs, args.device,
                                       score_tol)
        failed = 0
        for i, r in enumerate(reports):
            ok = (
                r['unmatched'] == 0 and r['max_box_diff'] <= box_tol
                and r['max_score_diff'] <= score_tol)
            failed += not ok
            print(f'check image {i}: {"PASS" if ok else "FAIL"} '
                  f'(box tol {box_tol:g} px, score tol {score_tol:g}) {r}')
        if failed:
            print(f'check failed on {failed} of {len(reports)} image(s)')
            sys.exit(1)


if __name__ == '__main__':
    main()
