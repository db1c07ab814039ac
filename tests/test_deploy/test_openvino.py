"""OpenVINO through MMDeploy (dfine_mmdet.deploy.backends.openvino).

The model is the random D-FINE-N of ``deploy_fixtures.py`` (640x640). The
ONNX graph is exported with the OpenVINO deploy configs, converted to an FP32
IR by the shim's ``to_backend``, run through MMDeploy's ``End2EndModel`` and
compared with PyTorch at the ONNX Runtime tolerances.
"""
import os.path as osp
import subprocess
import sys

import pytest

pytest.importorskip('mmdeploy')
pytest.importorskip(
    'openvino',
    reason='openvino is not installed (tools/setup_env.sh installs it; '
    'pip install openvino)')

from deploy_fixtures import DEPLOY_DIR, MODEL_CFG, ROOT, images  # noqa: E402

OV_STATIC = osp.join(DEPLOY_DIR, 'detection_openvino_static-640x640.py')
OV_DYNAMIC = osp.join(DEPLOY_DIR,
                      'detection_openvino_dynamic-batch-640x640.py')
BOX_TOL_PX = 1e-3
SCORE_TOL = 1e-4


def _export_ir(deploy_cfg_path, checkpoint, work_dir):
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import load_config

    import dfine_mmdet  # noqa: F401  (rewriters, symbolics, shims)
    deploy_cfg, model_cfg = load_config(deploy_cfg_path, MODEL_CFG)
    torch2onnx(images()[0], work_dir, 'end2end.onnx', deploy_cfg, model_cfg,
               checkpoint, 'cpu')
    return to_backend(
        'openvino', [osp.join(work_dir, 'end2end.onnx')],
        work_dir=work_dir,
        deploy_cfg=deploy_cfg,
        device='cpu')


@pytest.fixture(scope='module')
def ov_dynamic_ir(checkpoint, tmp_path_factory):
    return _export_ir(OV_DYNAMIC, checkpoint,
                      str(tmp_path_factory.mktemp('ov_dynamic')))


def _assert_exact(reports, n):
    assert len(reports) == n
    for r in reports:
        assert r['num_ref'] == r['num_test'] == 300, r
        assert r['unmatched'] == 0, r
        assert r['max_box_diff'] <= BOX_TOL_PX, r
        assert r['max_score_diff'] <= SCORE_TOL, r


def test_ir_files_and_dynamic_batch_axis(ov_dynamic_ir):
    import openvino as ov
    assert len(ov_dynamic_ir) == 1 and ov_dynamic_ir[0].endswith('.xml')
    assert osp.isfile(ov_dynamic_ir[0][:-4] + '.bin')
    model = ov.Core().read_model(ov_dynamic_ir[0])
    shape = model.inputs[0].get_partial_shape()
    assert shape[0].is_dynamic and [d.get_length()
                                    for d in list(shape)[1:]] == [3, 640, 640]
    names = sorted(o.get_any_name() for o in model.outputs)
    assert names == ['dets', 'labels']
    # FP32 weights (not compressed to FP16 on save)
    consts = [op for op in model.get_ops() if op.get_type_name() == 'Constant']
    assert not any(
        str(c.get_element_type()) == '<Type: \'float16\'>' for c in consts)


@pytest.mark.parametrize('batch', [1, 2])
def test_openvino_dynamic_batch_matches_pytorch(ov_dynamic_ir, checkpoint,
                                                batch):
    """Traced at batch 1, run through MMDeploy's End2EndModel at 1 and 2."""
    from dfine_mmdet.deploy.verify import compare_with_pytorch
    reports = compare_with_pytorch(OV_DYNAMIC, MODEL_CFG, checkpoint,
                                   ov_dynamic_ir,
                                   images()[:batch])
    _assert_exact(reports, batch)


def test_deploy_py_openvino_static_check(checkpoint, tmp_path):
    """README / docs/deploy.md: ``python tools/deploy.py
    configs/deploy/detection_openvino_static-640x640.py <N config> CKPT
    --work-dir ... --check``."""
    work = tmp_path / 'dfine_n_ov'
    proc = subprocess.run([
        sys.executable, 'tools/deploy.py', OV_STATIC,
        'configs/dfine/dfine_hgnetv2_n_coco.py', checkpoint, '--work-dir',
        str(work), '--check'
    ],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert osp.isfile(work / 'end2end.xml') and osp.isfile(
        work / 'end2end.bin')
    assert 'graph check (openvino)' in out and 'custom ops: none' in out
    assert 'check image 0: PASS' in out, out[-3000:]


def test_wrapper_errors_name_the_file(ov_dynamic_ir, tmp_path):
    from dfine_mmdet.deploy.backends.openvino import OpenVINOWrapper2024
    missing = str(tmp_path / 'nothing.xml')
    with pytest.raises(FileNotFoundError, match='nothing.xml'):
        OpenVINOWrapper2024(missing)
    with pytest.raises(KeyError, match=r"no output\(s\) \['boxes'\]"):
        OpenVINOWrapper2024(ov_dynamic_ir[0], output_names=['dets', 'boxes'])


def test_mmdeploy_openvino_converter_needs_the_shim(tmp_path):
    """Why the shim exists: MMDeploy 1.3.1's own converter shells out to the
    Model Optimizer (``mo``), which current openvino no longer ships. When
    this starts passing through MMDeploy's path, the shim can go."""
    from mmdeploy.backend.openvino import onnx2openvino
    if onnx2openvino.get_mo_command():
        pytest.skip('a Model Optimizer (`mo`) is installed here')
    with pytest.raises(RuntimeError, match='Model Optimizer is not found'):
        onnx2openvino.from_onnx(
            str(tmp_path / 'x.onnx'), str(tmp_path), {'input': [1, 3, 8, 8]},
            ['dets'])
