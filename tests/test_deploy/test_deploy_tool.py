"""``tools/deploy.py`` and ``tools/deploy.sh``: the trtexec command written for
TensorRT configs, and the command lines of README.md / docs/deploy.md."""
import importlib.util
import os.path as osp

import pytest
import torch

pytest.importorskip('mmdeploy')
from mmdeploy.utils import load_config  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location(
        'dfine_deploy_tool', osp.join(ROOT, 'tools', 'deploy.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _NormSoftmax(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, x):
        return torch.softmax(self.norm(x), dim=-1)


@pytest.fixture(scope='module')
def onnx_file(tmp_path_factory):
    from dfine_mmdet.deploy.export_shims import _accepts_kwarg
    path = str(tmp_path_factory.mktemp('tool') / 'end2end.onnx')
    kwargs = dict(opset_version=17, input_names=['input'])
    if _accepts_kwarg(torch.onnx.export, 'dynamo'):
        kwargs['dynamo'] = False
    torch.onnx.export(_NormSoftmax().eval(), torch.rand(2, 3, 4), path,
                      **kwargs)
    return path


def _names(path, op):
    import onnx
    return [n.name for n in onnx.load(path).graph.node if n.op_type == op]


def test_trtexec_fp16_dynamic(onnx_file):
    cfg = load_config(
        osp.join(
            ROOT, 'configs/deploy/'
            'detection_tensorrt-fp16_dynamic-batch-640x640.py'))[0]
    cmd = _tool().trtexec_command(onnx_file, cfg).split()
    assert cmd[0] == 'trtexec' and '--fp16' in cmd
    assert '--minShapes=input:1x3x640x640' in cmd
    assert '--optShapes=input:4x3x640x640' in cmd
    assert '--maxShapes=input:8x3x640x640' in cmd
    assert '--memPoolSize=workspace:1024M' in cmd
    assert '--precisionConstraints=obey' in cmd
    pinned = _names(onnx_file, 'LayerNormalization') + _names(
        onnx_file, 'Softmax')
    assert len(pinned) == 2
    spec = ','.join(f'{n}:fp32' for n in pinned)
    assert f'--layerPrecisions={spec}' in cmd
    assert f'--layerOutputTypes={spec}' in cmd


def test_trtexec_fp32_static(onnx_file):
    cfg = load_config(
        osp.join(ROOT, 'configs/deploy',
                 'detection_tensorrt_static-640x640.py'))[0]
    cmd = _tool().trtexec_command(onnx_file, cfg)
    assert '--fp16' not in cmd and 'layerPrecisions' not in cmd
    assert '--maxShapes=input:1x3x640x640' in cmd


# ------------------------------------------------ the command lines of README
@pytest.fixture(scope='module')
def demo_jpg(tmp_path_factory):
    import mmcv
    from deploy_fixtures import images
    path = str(tmp_path_factory.mktemp('demo') / 'demo.jpg')
    mmcv.imwrite(images()[0], path)
    return path


def _run(cmd, cwd):
    import os
    import subprocess
    import sys
    env = dict(
        os.environ,
        PYTHONUNBUFFERED='1',
        PATH=osp.dirname(sys.executable) + os.pathsep +
        os.environ.get('PATH', ''))
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_deploy_py_onnxruntime_check(checkpoint, demo_jpg, tmp_path):
    """README: ``python tools/deploy.py <ORT static> <N config> CKPT --img
    demo.jpg --work-dir ... --check``; then the same with a box tolerance no
    result can meet, which must fail."""
    import sys
    cmd = [
        sys.executable, 'tools/deploy.py',
        'configs/deploy/detection_onnxruntime_static-640x640.py',
        'configs/dfine/dfine_hgnetv2_n_coco.py', checkpoint, '--img', demo_jpg,
        '--work-dir',
        str(tmp_path / 'dfine_n_ort'), '--check'
    ]
    rc, out = _run(cmd, ROOT)
    assert rc == 0, out[-3000:]
    assert osp.isfile(tmp_path / 'dfine_n_ort' / 'end2end.onnx')
    assert 'custom ops: none' in out
    assert 'check image 0: PASS' in out, out[-3000:]

    rc, out = _run(cmd + ['--box-tol', '-1'], ROOT)
    assert rc == 1, out[-3000:]
    assert 'check image 0: FAIL' in out and 'check failed on 1 of 1' in out


def test_deploy_sh_tensorrt_fp16_without_tensorrt(checkpoint, demo_jpg,
                                                  tmp_path):
    """docs/deploy.md: ``tools/deploy.sh CKPT s trt-fp16 --img demo.jpg
    --check`` (here with N) on a machine without TensorRT or CUDA: the
    TensorRT graph is exported and checked, the trtexec command written."""
    rc, out = _run([
        'bash',
        osp.join(ROOT, 'tools', 'deploy.sh'), checkpoint, 'n', 'trt-fp16',
        '--img', demo_jpg, '--check'
    ], str(tmp_path))
    assert rc == 0, out[-3000:]
    work = tmp_path / 'work_dirs' / 'deploy' / 'dfine_n_trt-fp16'
    assert osp.isfile(work / 'end2end.onnx')
    cmd = (work / 'trtexec_cmd.sh').read_text()
    assert cmd.startswith('trtexec ') and '--fp16' in cmd
    assert 'graph check (tensorrt)' in out and 'custom ops: none' in out
    if importlib.util.find_spec('tensorrt') is None:
        assert 'tensorrt is not importable here' in out
        assert '--check skipped' in out
