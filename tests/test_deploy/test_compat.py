"""Unit tests of the deployment shims
(``dfine_mmdet.deploy.backends.tensorrt``,
``dfine_mmdet.deploy.export_shims``) that need no TensorRT.

The TensorRT shims run against ``fake_tensorrt``, a stand-in that has only
the TensorRT 10 Python API surface. Real TensorRT is NOT exercised here.
"""
import json
import os.path as osp
import sys

import pytest
import torch

from dfine_mmdet.deploy.backends import tensorrt as trt_shims
from dfine_mmdet.deploy.export_shims import _accepts_kwarg

sys.path.insert(0, osp.dirname(__file__))
import fake_tensorrt as fake_trt  # noqa: E402


def test_fake_has_no_removed_binding_api():
    """The stand-in really is TensorRT-10-shaped (what the shim must use)."""
    engine, ctx = fake_trt.ICudaEngine(), None
    ctx = engine.create_execution_context()
    for name in ('binding_is_input', 'get_binding_index', 'get_binding_shape',
                 'get_binding_dtype', 'get_profile_shape'):
        assert not hasattr(engine, name)
    for name in ('set_binding_shape', 'execute_async_v2', 'execute_v2'):
        assert not hasattr(ctx, name)


def test_wrapper_binds_by_name_and_runs():
    wrapper = trt_shims.TensorRT10Wrapper(
        fake_trt.ICudaEngine(), trt_module=fake_trt)
    assert wrapper._input_names == ['input']
    assert wrapper.output_names == ['dets', 'labels']
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4)
    out = wrapper({'input': x})  # float64 -> engine dtype float32
    assert out['dets'].dtype == torch.float32
    assert out['labels'].dtype == torch.int64
    assert out['dets'].shape == (2, 2, 5) and out['labels'].shape == (2, 2)
    expected = (x.float().reshape(2, -1)[:, :10] * 2).reshape(2, 2, 5)
    assert torch.equal(out['dets'], expected)
    assert out['labels'].tolist() == [[0, 1], [10, 11]]
    assert wrapper.context.streams == [0]  # host tensors: no CUDA stream
    dets, labels = wrapper.output_to_list(out)
    assert dets is out['dets'] and labels is out['labels']


def test_wrapper_output_order_and_errors():
    wrapper = trt_shims.TensorRT10Wrapper(
        fake_trt.ICudaEngine(),
        output_names=['labels', 'dets'],
        trt_module=fake_trt)
    out = wrapper({'input': torch.zeros(1, 3, 4, 4)})
    assert [t.shape for t in wrapper.output_to_list(out)] == [(1, 2),
                                                              (1, 2, 5)]
    with pytest.raises(ValueError, match='outside the engine profile'):
        wrapper({'input': torch.zeros(5, 3, 4, 4)})
    with pytest.raises(KeyError, match='missing'):
        wrapper({})
    with pytest.raises(KeyError, match='not an input'):
        wrapper({'input': torch.zeros(1, 3, 4, 4), 'x': torch.zeros(1)})
    on_device = trt_shims.TensorRT10Wrapper(
        fake_trt.ICudaEngine(location=fake_trt.TensorLocation.DEVICE),
        trt_module=fake_trt)
    with pytest.raises(ValueError, match='CUDA tensor'):
        on_device({'input': torch.zeros(1, 3, 4, 4)})


def test_wrapper_loads_engine_file(tmp_path):
    path = tmp_path / 'end2end.engine'
    path.write_bytes(b'fake-engine')
    wrapper = trt_shims.TensorRT10Wrapper(str(path), trt_module=fake_trt)
    assert wrapper.engine.num_io_tensors == 3
    with pytest.raises(FileNotFoundError):
        trt_shims.TensorRT10Wrapper(
            str(tmp_path / 'missing.engine'), trt_module=fake_trt)
    bad = tmp_path / 'bad.engine'
    bad.write_bytes(b'garbage')
    with pytest.raises(RuntimeError, match='could not deserialize'):
        trt_shims.TensorRT10Wrapper(str(bad), trt_module=fake_trt)


def test_dtype_table():
    assert trt_shims._torch_dtype_from_trt(fake_trt, fake_trt.int64) is \
        torch.int64
    assert trt_shims._torch_dtype_from_trt(fake_trt, fake_trt.float16) is \
        torch.float16
    with pytest.raises(TypeError):
        trt_shims._torch_dtype_from_trt(fake_trt, object())


class _TinyTransformerBlock(torch.nn.Module):
    """Conv -> LayerNorm -> softmax attention: the layer kinds at stake."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.LayerNorm(8)

    def forward(self, x):
        t = self.conv(x).flatten(2).transpose(1, 2)  # [B, N, 8]
        t = self.norm(t)
        attn = torch.softmax(t @ t.transpose(1, 2), dim=-1)
        return attn @ t


@pytest.fixture(scope='module')
def tiny_onnx(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('onnx') / 'tiny.onnx')
    kwargs = dict(
        opset_version=17, input_names=['input'], output_names=['out'])
    if _accepts_kwarg(torch.onnx.export, 'dynamo'):
        kwargs['dynamo'] = False
    torch.onnx.export(_TinyTransformerBlock().eval(), torch.rand(1, 3, 4, 4),
                      path, **kwargs)
    return path


def _node_names(path, op_type):
    import onnx
    return [n.name for n in onnx.load(path).graph.node if n.op_type == op_type]


def test_builder_fp16_pins_norm_and_softmax(tiny_onnx, tmp_path):
    engine_file = str(tmp_path / 'tiny.engine')
    shapes = dict(
        input=dict(
            min_shape=[1, 3, 4, 4],
            opt_shape=[1, 3, 4, 4],
            max_shape=[2, 3, 4, 4]))
    pinned = trt_shims.build_tensorrt_engine(
        tiny_onnx,
        engine_file,
        shapes,
        fp16_mode=True,
        max_workspace_size=1 << 20,
        fp32_layer_types=['NORMALIZATION', 'SOFTMAX'],
        trt_module=fake_trt)
    norms = _node_names(tiny_onnx, 'LayerNormalization')
    softmaxes = _node_names(tiny_onnx, 'Softmax')
    assert len(norms) == 1 and len(softmaxes) == 1
    assert sorted(pinned) == sorted(norms + softmaxes)

    builder = fake_trt.Builder.last
    assert builder.network.flags == 0  # no EXPLICIT_BATCH on TensorRT 10
    assert builder.config.flags == {'FP16', 'OBEY'}
    assert builder.config.pool_limits == {'WORKSPACE': 1 << 20}
    by_name = {layer.name: layer for layer in builder.network.layers}
    for name in pinned:
        layer = by_name[name]
        assert layer.precision is fake_trt.float32
        assert layer.output_types == {0: fake_trt.float32}
    norm = by_name[norms[0]]
    assert isinstance(norm, fake_trt.INormalizationLayer)
    assert norm.compute_precision is fake_trt.float32
    conv = next(lay for lay in builder.network.layers
                if lay.type == 'CONVOLUTION')
    assert conv.precision is None and conv.output_types == {}

    plan = json.loads(open(engine_file, 'rb').read())
    assert sorted(plan['pinned']) == sorted(pinned)
    assert plan['profiles'] == [{
        'input': [[1, 3, 4, 4], [1, 3, 4, 4], [2, 3, 4, 4]]
    }]


def test_builder_name_patterns_and_fp32(tiny_onnx, tmp_path):
    shapes = dict(
        input=dict(
            min_shape=[1, 3, 4, 4],
            opt_shape=[1, 3, 4, 4],
            max_shape=[1, 3, 4, 4]))
    pinned = trt_shims.build_tensorrt_engine(
        tiny_onnx,
        str(tmp_path / 'a.engine'),
        shapes,
        fp16_mode=True,
        fp32_layer_name_patterns=[r'/conv/'],
        trt_module=fake_trt)
    assert pinned == _node_names(tiny_onnx, 'Conv')
    # fp32 engine: nothing pinned, no precision flags
    pinned = trt_shims.build_tensorrt_engine(
        tiny_onnx,
        str(tmp_path / 'b.engine'),
        shapes,
        fp16_mode=False,
        fp32_layer_types=['NORMALIZATION'],
        trt_module=fake_trt)
    assert pinned == [] and fake_trt.Builder.last.config.flags == set()
    with pytest.raises(ValueError, match='fp32_layer_types'):
        trt_shims.build_tensorrt_engine(
            tiny_onnx,
            str(tmp_path / 'c.engine'),
            shapes,
            fp16_mode=True,
            fp32_layer_types=['LAYERNORM'],
            trt_module=fake_trt)


def test_builder_tensorrt11_fp16_error(tiny_onnx, tmp_path, monkeypatch):
    """TensorRT 11 removed BuilderFlag.FP16 (strong typing only)."""
    monkeypatch.setattr(fake_trt, '__version__', '11.0.0')
    monkeypatch.setattr(fake_trt, 'BuilderFlag',
                        type('BuilderFlag', (), dict(TF32='TF32')))
    shapes = dict(
        input=dict(
            min_shape=[1, 3, 4, 4],
            opt_shape=[1, 3, 4, 4],
            max_shape=[1, 3, 4, 4]))
    with pytest.raises(RuntimeError, match='AutoCast'):
        trt_shims.build_tensorrt_engine(
            tiny_onnx,
            str(tmp_path / 'x.engine'),
            shapes,
            fp16_mode=True,
            trt_module=fake_trt)


def test_builder_reports_parser_errors(tmp_path):
    import onnx
    from onnx import helper
    node = helper.make_node(
        'grid_sampler', ['x', 'g'], ['y'], domain='mmdeploy')
    graph = helper.make_graph([node], 'g', [], [])
    path = str(tmp_path / 'custom.onnx')
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(RuntimeError, match='mmdeploy::grid_sampler'):
        trt_shims.build_tensorrt_engine(
            path, str(tmp_path / 'y.engine'), {}, trt_module=fake_trt)


def test_version_parse():
    assert trt_shims._parse_version('10.16.1.11') == (10, 16)
    assert trt_shims._parse_version('8.6.1.post1') == (8, 6)
    assert trt_shims._parse_version('11') == (11, 0)


@pytest.fixture
def restore_trt_registries(monkeypatch):
    pytest.importorskip('mmdeploy')
    from mmdeploy.backend.base import BACKEND_MANAGERS, get_backend_manager
    get_backend_manager('tensorrt')  # make MMDeploy register its own first
    monkeypatch.setattr(trt_shims, '_TRT_SHIM_APPLIED', False)
    monkeypatch.setitem(BACKEND_MANAGERS._module_dict, 'tensorrt',
                        BACKEND_MANAGERS._module_dict['tensorrt'])


def test_shim_inactive_without_tensorrt(restore_trt_registries):
    """On this CPU-only machine tensorrt is not importable (stack_probe §5);
    the shim must then stay inactive instead of failing."""
    if trt_shims.tensorrt_version() is not None:
        pytest.skip('tensorrt is importable on this machine')
    from mmdeploy.backend.base import get_backend_manager
    assert trt_shims.apply_mmdeploy_tensorrt_shim() is False
    assert get_backend_manager('tensorrt').__name__ == 'TensorRTManager'


def test_manager_registration(restore_trt_registries):
    from mmdeploy.backend.base import get_backend_manager
    from mmdeploy.backend.tensorrt.backend_manager import TensorRTManager
    assert trt_shims.apply_mmdeploy_tensorrt_shim(force=True)
    manager = get_backend_manager('tensorrt')
    assert manager.__name__ == 'DFINETensorRTManager'
    assert issubclass(manager, TensorRTManager)
    assert manager.to_backend.__func__ is \
        trt_shims._TensorRTShimManagerMixin.to_backend.__func__


def test_onnx_export_shim_forces_torchscript(tmp_path):
    """Inside MMDeploy's RewriterContext torch.onnx.export gets
    dynamo=False (torch >= 2.9 defaults to dynamo)."""
    pytest.importorskip('mmdeploy')
    from mmdeploy.core import RewriterContext

    import dfine_mmdet.deploy  # noqa: F401  (registers the shim)
    seen = {}

    def fake_export(*args, dynamo=True, **kwargs):
        seen['dynamo'] = dynamo

    real = torch.onnx.export
    torch.onnx.export = fake_export
    try:
        with RewriterContext(cfg={}, backend='onnxruntime', opset=17):
            torch.onnx.export(None, None, 'x.onnx')
        assert seen['dynamo'] is False
        seen.clear()
        with RewriterContext(cfg={}, backend='onnxruntime', opset=17):
            torch.onnx.export(None, None, 'x.onnx', dynamo=True)
        assert seen['dynamo'] is True  # an explicit choice is kept
        torch.onnx.export(None, None, 'x.onnx')  # outside: untouched
        assert seen['dynamo'] is True
    finally:
        torch.onnx.export = real
