"""Opt-in INT8 quantisation (dfine_mmdet.deploy.quantize, tools/deploy_int8.py).

Model: the toy D-FINE-N (``configs/dfine/toy``, 128x128, 60 queries) with
random weights plus noise as in ``deploy_fixtures.py`` (so that features and
scores vary with the input), exported with the static ONNX Runtime deploy
config at 128x128; calibration: 2 images of the ``toy_coco`` train split.

Random weights give near-constant detections, so detection agreement alone
cannot tell a working quantiser from a broken one (a quantiser whose
activation ranges are 20x too narrow keeps 10/10 top detections here). The
check that does: two backbone feature maps (stages 0 and 1) are made graph
outputs before quantising; INT8 must reproduce them per image (correlation)
and must reproduce how they change from one image to the next. The badly
calibrated control fails the second part. Deeper probes are not used: a
random network's deep features either barely depend on the input (they
collapse, as here) or, with BatchNorm statistics re-estimated, amplify any
perturbation (INT8 or not) chaotically; the accuracy of INT8 on a trained
model is measured by ``tools/experiments/int8_toy.py`` (toy-set mAP).
"""
import glob
import os.path as osp
import sys

import numpy as np
import pytest

pytest.importorskip('mmdeploy')
pytest.importorskip('onnxruntime.quantization')

from deploy_fixtures import DEPLOY_DIR, ROOT, \
    save_random_checkpoint  # noqa: E402

TOY_CFG = osp.join(ROOT, 'configs/dfine/toy/dfine_hgnetv2_n_toy.py')
ORT_STATIC = osp.join(DEPLOY_DIR, 'detection_onnxruntime_static-640x640.py')
if osp.join(ROOT, 'tools') not in sys.path:
    sys.path.insert(0, osp.join(ROOT, 'tools'))  # tools/deploy_int8.py
SIZE = 128
PROBES = (
    '/backbone/stages.0/blocks/blocks.0/aggregation/aggregation.1/conv/'
    'Conv_output_0', '/backbone/stages.1/blocks/blocks.0/layers.2/conv/'
    'Conv_output_0')
MIN_CORR = 0.98  # per image, INT8 vs FP32
MIN_DIFF_CORR = 0.9  # of the image-to-image changes


def _deploy_cfg():
    from mmdeploy.utils import load_config
    cfg = load_config(ORT_STATIC)[0]
    cfg.onnx_config.input_shape = [SIZE, SIZE]
    return cfg


@pytest.fixture(scope='module')
def int8_setup(toy_coco, tmp_path_factory):
    """FP32 export, the same graph with the probe outputs, its INT8 copy and
    a badly calibrated INT8 copy."""
    import onnx
    from mmengine import Config

    import dfine_mmdet  # noqa: F401
    from dfine_mmdet.deploy.export import export_onnx
    from dfine_mmdet.deploy.quantize import calibration_inputs, quantize_onnx
    wd = tmp_path_factory.mktemp('int8')
    ckpt = save_random_checkpoint(str(wd / 'toy_random.pth'), TOY_CFG)
    train = sorted(glob.glob(osp.join(toy_coco, 'train', '*')))[:2]
    val = sorted(glob.glob(osp.join(toy_coco, 'val', '*')))
    deploy_cfg, model_cfg = _deploy_cfg(), Config.fromfile(TOY_CFG)
    fp32 = export_onnx(train[0], str(wd), 'end2end.onnx', deploy_cfg,
                       model_cfg, ckpt)
    probed = onnx.load(fp32)
    for name in PROBES:
        probed.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                               None))
    probed_file = str(wd / 'probed.onnx')
    onnx.save(probed, probed_file)
    calib = calibration_inputs(deploy_cfg, model_cfg, train)
    int8 = str(wd / 'probed_int8.onnx')
    info = quantize_onnx(probed_file, int8, calib)
    bad = str(wd / 'probed_int8_bad.onnx')
    quantize_onnx(probed_file, bad, [a * 0.05 for a in calib])
    evals = calibration_inputs(deploy_cfg, model_cfg, train + val)
    return dict(fp32=fp32, probed=probed_file, int8=int8, bad=bad,
                info=info, calib=calib, evals=evals, train=train, wd=wd,
                ckpt=ckpt)


def _run(onnx_file, inputs):
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_file,
                                providers=['CPUExecutionProvider'])
    return [sess.run(None, {'input': x}) for x in inputs]


def _corr(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _probe_scores(ref_outs, test_outs):
    """Per probe: smallest per-image correlation and the correlation of the
    image-to-image changes (each image minus the next)."""
    assert len(ref_outs) == len(test_outs) >= 2
    scores = {}
    for k, name in enumerate(PROBES, start=2):
        ref = [o[k] for o in ref_outs]
        test = [o[k] for o in test_outs]
        per_image = min(_corr(r, t) for r, t in zip(ref, test, strict=True))
        diffs = _corr(
            np.stack([ref[i] - ref[i + 1] for i in range(len(ref) - 1)]),
            np.stack([test[i] - test[i + 1] for i in range(len(test) - 1)]))
        scores[name] = (per_image, diffs)
    return scores


def test_int8_graph_has_quant_ops_default_scope(int8_setup):
    import onnx

    from dfine_mmdet.deploy.quantize import count_quant_ops
    info = int8_setup['info']
    assert info['QuantizeLinear'] > 50 and info['DequantizeLinear'] > 100
    assert info['quantised'] > 100 and info['kept_fp32'] > 0
    graph = onnx.load(int8_setup['int8']).graph
    dq_out = {n.output[0] for n in graph.node if n.op_type ==
              'DequantizeLinear'}
    convs = [n for n in graph.node
             if n.op_type == 'Conv' and n.name.startswith('/backbone/')]
    assert convs and all(n.input[1] in dq_out for n in convs)
    heads = [n for n in graph.node if n.name.startswith('/cls_branches.')
             and n.op_type in ('MatMul', 'Gemm')]
    assert heads and not any(n.input[1] in dq_out for n in heads)
    # FP32 export (the default deploy path) has none
    assert count_quant_ops(int8_setup['fp32']) == dict(
        QuantizeLinear=0, DequantizeLinear=0, FakeQuantize=0)


def test_int8_tracks_fp32_and_broken_calibration_does_not(int8_setup):
    ref = _run(int8_setup['probed'], int8_setup['evals'])
    good = _probe_scores(ref, _run(int8_setup['int8'], int8_setup['evals']))
    bad = _probe_scores(ref, _run(int8_setup['bad'], int8_setup['evals']))
    for name in PROBES:
        per_image, diffs = good[name]
        assert per_image > MIN_CORR, (name, good)
        assert diffs > MIN_DIFF_CORR, (name, good)
    # the control: activation ranges 20x too narrow saturate the features
    assert min(bad[n][1] for n in PROBES) < MIN_DIFF_CORR, bad


def test_int8_detections_close_to_fp32(int8_setup):
    from deploy_int8 import agreement
    ref = _run(int8_setup['fp32'], int8_setup['calib'])
    test = _run(int8_setup['int8'], int8_setup['calib'])
    for r, t in zip(ref, test, strict=True):
        r = (r[0][0, :, :4], r[0][0, :, 4], r[1][0])
        t = (t[0][0, :, :4], t[0][0, :, 4], t[1][0])
        top10 = np.sort(r[1])[-10] - 1e-6
        a = agreement(r, t, top10)
        assert a['num_ref'] >= 10 and a['agree'] >= 9, a
        assert a['mean_iou'] > 0.9, a


def test_openvino_runs_int8_ir(int8_setup):
    pytest.importorskip('openvino', reason='openvino is not installed')
    import openvino as ov

    from dfine_mmdet.deploy.quantize import (count_quant_ops,
                                             onnx_to_openvino_ir)
    xml = onnx_to_openvino_ir(int8_setup['int8'])
    assert count_quant_ops(xml)['FakeQuantize'] > 50
    fp32_xml = onnx_to_openvino_ir(int8_setup['fp32'],
                                   str(int8_setup['wd'] / 'fp32.xml'))
    assert count_quant_ops(fp32_xml)['FakeQuantize'] == 0
    compiled = ov.Core().compile_model(xml, 'CPU')
    ov_outs = [[compiled(x)[o] for o in compiled.outputs]
               for x in int8_setup['evals']]
    ref = _run(int8_setup['probed'], int8_setup['evals'])
    scores = _probe_scores(ref, ov_outs)
    for name in PROBES:
        assert scores[name][0] > MIN_CORR and \
            scores[name][1] > MIN_DIFF_CORR, (name, scores)


def test_deploy_int8_cli(int8_setup, tmp_path, capsys):
    """``tools/deploy_int8.py`` with an OpenVINO deploy config (the README
    command) at 128x128: FP32 and INT8 IRs, ``--check`` through MMDeploy's
    backend model."""
    pytest.importorskip('openvino', reason='openvino is not installed')
    from deploy_int8 import main
    deploy_cfg = tmp_path / 'ov_static_128.py'
    ov_static = osp.join(DEPLOY_DIR, 'detection_openvino_static-640x640.py')
    deploy_cfg.write_text(
        f'_base_ = [{ov_static!r}]\n'
        f'onnx_config = dict(input_shape=[{SIZE}, {SIZE}])\n'
        'backend_config = dict(model_inputs=[dict(opt_shapes=dict('
        f'input=[1, 3, {SIZE}, {SIZE}]))])\n')
    wd = tmp_path / 'wd'
    rc = main([
        str(deploy_cfg), TOY_CFG, int8_setup['ckpt'], '--calib',
        *int8_setup['train'], '--onnx', int8_setup['fp32'], '--work-dir',
        str(wd), '--check', '--score-thr', '0.0', '--scope',
        'backbone-neck'
    ])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in ('end2end_int8.onnx', 'end2end_int8.xml', 'end2end_fp32.xml'):
        assert osp.isfile(wd / name), name
    assert 'INT8 (backbone-neck)' in out and '--check:' in out, out


def test_quantize_errors(int8_setup, tmp_path):
    import onnx

    from dfine_mmdet.deploy.quantize import (calibration_inputs,
                                             quantize_onnx, select_nodes)
    with pytest.raises(ValueError, match='scope'):
        select_nodes(onnx.load(int8_setup['fp32']), 'everything')
    with pytest.raises(FileNotFoundError, match='nope.png'):
        calibration_inputs(_deploy_cfg(), TOY_CFG, ['nope.png'])
    with pytest.raises(ValueError, match='float32'):
        quantize_onnx(int8_setup['fp32'], str(tmp_path / 'x.onnx'),
                      [np.zeros((3, SIZE, SIZE), np.float32)])


@pytest.mark.slow
def test_int8_toy_benchmark_command_line(int8_setup, toy_coco, capsys):
    """``tools/experiments/int8_toy.py`` end to end at small sizes: toy mAP of
    FP32 / INT8 in both runtimes, then the interleaved latency table."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'int8_toy', osp.join(ROOT, 'tools', 'experiments', 'int8_toy.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    main = tool.main
    have_ov = __import__('importlib').util.find_spec('openvino') is not None
    rc = main([
        '--checkpoint', int8_setup['ckpt'], '--data', toy_coco,
        '--num-calib', '1', '--scopes', 'no-heads', '--variants', 'n',
        '--size', '320', '--runs', '1', '--rounds', '1', '--warmup', '0'
    ])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = [line for line in out.splitlines() if line.startswith('| int8')]
    assert len(rows) == (2 if have_ov else 1), out
    assert '| plugin-int8-ort |' in out and '| official-ort |' in out, out
    assert 'best int8 / best official fp32:' in out, out
    if have_ov:
        assert '| plugin-int8-openvino |' in out, out
