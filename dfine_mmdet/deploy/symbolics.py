"""ONNX symbolics that D-FINE needs from MMDeploy: standard ops only.

D-FINE's deformable attention samples with ``F.grid_sample``
(``aten::grid_sampler``). For every backend, MMDeploy 1.3.1 registers a
symbolic that emits its custom op ``mmdeploy::grid_sampler``, so a runtime
would need MMDeploy's compiled op library (ONNX Runtime) or plugin library
(TensorRT). ONNX has a native ``GridSample`` since opset 16, and ONNX Runtime
and TensorRT (>= 8.5, ``IGridSampleLayer``) both run it, and so does OpenVINO.
The records below are registered for the ``onnxruntime``, ``tensorrt`` and
``openvino`` backends. MMDeploy prefers a backend-specific record to its
default one (stack_probe §4), so these records delegate to torch's own
opset-16 symbolic.

MMDeploy also replaces ``layer_norm`` by a ReduceMean/Pow/Sqrt/Div
decomposition for every backend (a fix for torch <= 1.12). At opset >= 17 the
records below emit the native ``LayerNormalization`` instead. TensorRT maps
it to one ``INormalizationLayer``, which is what the FP16 deploy configs pin
to FP32 (``dfine_mmdet.deploy.backends.tensorrt.pin_layers_to_fp32``). At
opset 16 torch's own decomposition is used.
"""
from mmdeploy.core import SYMBOLIC_REWRITER
from mmdeploy.utils import get_ir_config

#: backends whose ONNX graphs must stay free of MMDeploy custom ops
NATIVE_OP_BACKENDS = ('onnxruntime', 'tensorrt', 'openvino')
GRID_SAMPLE_MIN_OPSET = 16
LAYER_NORM_MIN_OPSET = 17


def _opset(ctx) -> int:
    return int(get_ir_config(ctx.cfg).get('opset_version', 11))


def grid_sampler__native(g, *args):
    """``aten::grid_sampler`` -> ONNX ``GridSample`` (opset >= 16)."""
    ctx = SYMBOLIC_REWRITER.get_context('grid_sampler')
    opset = _opset(ctx)
    if opset < GRID_SAMPLE_MIN_OPSET:
        raise ValueError(
            f'onnx_config.opset_version={opset}: D-FINE deformable attention '
            f'exports F.grid_sample as ONNX GridSample, which needs opset >= '
            f'{GRID_SAMPLE_MIN_OPSET} (configs/deploy/ use 17)')
    from torch.onnx import symbolic_opset16
    return symbolic_opset16.grid_sampler(g, *args)


def layer_norm__native(g, *args):
    """``aten::layer_norm`` -> ONNX ``LayerNormalization`` at opset >= 17."""
    ctx = SYMBOLIC_REWRITER.get_context('layer_norm')
    if _opset(ctx) >= LAYER_NORM_MIN_OPSET:
        from torch.onnx import symbolic_opset17
        return symbolic_opset17.layer_norm(g, *args)
    from torch.onnx import symbolic_opset9
    return symbolic_opset9.layer_norm(g, *args)


for _backend in NATIVE_OP_BACKENDS:
    SYMBOLIC_REWRITER.register_symbolic(
        'grid_sampler', backend=_backend, is_pytorch=True)(
            grid_sampler__native)
    SYMBOLIC_REWRITER.register_symbolic(
        'layer_norm', backend=_backend, is_pytorch=True)(
            layer_norm__native)
