"""``tools/deploy.py``: the trtexec command it writes for TensorRT configs."""
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
    from dfine_mmdet.compat import _accepts_kwarg
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
        osp.join(ROOT, 'configs/deploy/'
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
