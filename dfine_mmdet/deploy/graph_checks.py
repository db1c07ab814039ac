"""Static checks of an exported D-FINE ONNX graph (no runtime needed).

These checks run on any machine, including ones without TensorRT:

* :func:`custom_domain_ops`: nodes outside the default ONNX domain, e.g.
  ``mmdeploy::grid_sampler``. Such nodes need MMDeploy's compiled op library
  (ONNX Runtime) or plugin library (TensorRT).
* :func:`unsupported_tensorrt_ops`: op types missing from the ONNX-TensorRT
  parser's support matrix (``onnx/onnx-tensorrt`` ``docs/operators.md``,
  TensorRT 10.x). GridSample needs TensorRT >= 8.5 and LayerNormalization
  >= 8.6.
* :func:`non_constant_topk`: ``TopK`` nodes whose ``K`` is not a build-time
  constant, or is >= 3840. TensorRT rejects both.
"""
from typing import Dict, List, Union

import onnx
from onnx import numpy_helper

DEFAULT_DOMAINS = ('', 'ai.onnx')

#: ONNX ops the ONNX-TensorRT parser supports (support matrix, TensorRT 10.x).
TENSORRT10_ONNX_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool
BatchNormalization Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape
Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish
Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN
LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min
Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus
Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze
Upsample Where Xor
""".split())

TENSORRT_MAX_TOPK = 3840


def _load(model: Union[str, onnx.ModelProto]) -> onnx.ModelProto:
    return onnx.load(model) if isinstance(model, str) else model


def op_type_counts(model: Union[str, onnx.ModelProto]) -> Dict[str, int]:
    """``{op_type: count}`` over the main graph (``domain::op`` for
    non-default domains)."""
    counts: Dict[str, int] = {}
    for node in _load(model).graph.node:
        key = (
            node.op_type if node.domain in DEFAULT_DOMAINS else
            f'{node.domain}::{node.op_type}')
        counts[key] = counts.get(key, 0) + 1
    return counts


def custom_domain_ops(model: Union[str, onnx.ModelProto]) -> List[str]:
    """Sorted ``domain::op`` names of nodes outside the default domain."""
    return sorted(k for k in op_type_counts(model) if '::' in k)


def unsupported_tensorrt_ops(model: Union[str, onnx.ModelProto]) -> List[str]:
    """Sorted op types that the TensorRT 10 ONNX parser does not support."""
    return sorted(
        k for k in op_type_counts(model) if k not in TENSORRT10_ONNX_OPS)


def non_constant_topk(model: Union[str, onnx.ModelProto]) -> List[str]:
    """Names of TopK nodes whose K is computed at run time or is too big for
    TensorRT (>= 3840)."""
    model = _load(model)
    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == 'Constant':
            for attr in node.attribute:
                if attr.name == 'value':
                    constants[node.output[0]] = attr.t
    bad = []
    for node in model.graph.node:
        if node.op_type != 'TopK':
            continue
        k = constants.get(node.input[1]) if len(node.input) > 1 else None
        if k is None:
            bad.append(node.name)
            continue
        values = numpy_helper.to_array(k).reshape(-1)
        if values.size != 1 or int(values[0]) >= TENSORRT_MAX_TOPK:
            bad.append(node.name)
    return bad


def check_graph(model: Union[str, onnx.ModelProto],
                backend: str = 'onnxruntime') -> Dict[str, object]:
    """Run the checks that apply to ``backend``.

    Returns:
        dict: ``op_counts``, ``custom_ops`` and, for ``tensorrt``,
        ``unsupported_tensorrt_ops`` and ``non_constant_topk``; ``ok`` is
        True when every list is empty.
    """
    model = _load(model)
    report = dict(
        op_counts=op_type_counts(model), custom_ops=custom_domain_ops(model))
    issues = list(report['custom_ops'])
    if backend == 'tensorrt':
        report['unsupported_tensorrt_ops'] = unsupported_tensorrt_ops(model)
        report['non_constant_topk'] = non_constant_topk(model)
        issues += report['unsupported_tensorrt_ops']
        issues += report['non_constant_topk']
    report['ok'] = not issues
    return report
