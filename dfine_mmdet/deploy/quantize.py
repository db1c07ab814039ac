"""INT8 post-training quantisation of the exported D-FINE graph (opt-in).

Nothing in the default deploy path calls this module: ``tools/deploy.py``
and the deploy configs write FP32 graphs. ``tools/deploy_int8.py`` is the
command line.

Method: ONNX Runtime's static quantisation (``quantize_static``, shipped with
``onnxruntime``, so no extra dependency) in the QDQ format. The FP32
end-to-end graph of MMDeploy (input ``input [B, 3, H, W]``, outputs ``dets
[B, K, 5]`` / ``labels [B, K]``) gets ``QuantizeLinear`` /
``DequantizeLinear`` pairs around the inputs of its ``Conv`` / ``MatMul`` /
``Gemm`` nodes: weights int8 per output channel (symmetric), activations
uint8 per tensor with ranges from the calibration images (min/max). The QDQ
file runs in ONNX Runtime and in OpenVINO, which turns each pair into a
``FakeQuantize`` and executes the layer with int8 kernels
(:func:`onnx_to_openvino_ir` writes the IR).

Calibration inputs are what the graph sees: each image goes through the
model config's test pipeline and the model's data preprocessor, exactly as
MMDeploy's ``task_processor.create_input`` prepares the export input
(:func:`calibration_inputs`).

Scopes (which layers stay FP32; node names are those of the MMDeploy export,
e.g. ``/decoder/layers.0/cross_attn/sampling_offsets/MatMul``):

* ``all``: every Conv / MatMul / Gemm;
* ``no-heads``: all but the prediction heads (encoder score / box heads,
  decoder box branches and the FDR integral ``/decoder/MatMul*``, class
  heads, LQE) and the deformable-attention sampling offsets / attention
  weights;
* ``backbone-neck``: only the backbone and the hybrid encoder (neck); the
  whole decoder stays FP32.

Softmax, top-k, GridSample, the box decoding and the FDR weighting are not
Conv / MatMul / Gemm and are never quantised in any scope. The mAP of each
scope on the toy set is printed by ``tools/experiments/int8_toy.py``.

Portability across x86 CPUs (``reduce_range``, default on): the integer
kernels of ONNX Runtime (MLAS) and of OpenVINO (oneDNN) multiply uint8
activations by int8 weights. With VNNI (``vpdpbusd``: AVX512-VNNI,
AVX-VNNI) or AMX the products are summed in int32. Without it (AVX2 only,
e.g. AMD Zen 2/3 or Intel before Ice Lake / Alder Lake, and AVX-512 without
VNNI) the kernels use ``vpmaddubsw``, which adds two adjacent
``uint8 x int8`` products into a *saturating int16*: ``255 * 127 * 2 =
64770`` does not fit, so a graph with full-range int8 weights computes other
numbers there (ONNX Runtime's quantisation guide documents this and
recommends ``reduce_range`` or U8U8). With ``reduce_range`` the weights are
quantised to 7 bits (``|q| <= 64``, per channel), so ``255 * 64 * 2 =
32640`` always fits: every kernel computes the same exact int32 sums, at the
price of one bit of weight precision. ONNX Runtime then gives the same
results on every x86-64 CPU; OpenVINO picks other kernels per CPU and
differs in rounding, no longer by saturation (docs/deploy.md).
:func:`int8_saturation_report` proves the bound statically for a written
file; :mod:`.emulated_cpu` runs a graph on an emulated AVX2-only CPU to
show it numerically.
"""
import os
import os.path as osp
import re
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np

#: node types whose inputs get QDQ pairs
QUANT_OP_TYPES = ('Conv', 'MatMul', 'Gemm')

#: largest sum of two ``uint8 x int8`` products that ``vpmaddubsw`` (the
#: u8s8 dot product of x86 CPUs without VNNI) stores without saturating
INT16_MAX = 32767
UINT8_MAX = 255

#: regular expressions (``re.search`` on the ONNX node name) of the nodes
#: kept in FP32 by each scope; ``backbone-neck`` is an allow-list instead
HEAD_PATTERNS = (
    r'^/enc_cls_branch/',
    r'^/enc_reg_branch/',
    r'^/decoder/pre_reg_branch/',
    r'^/decoder/reg_branches\.',
    r'^/decoder/MatMul',  # FDR: distribution x weighting function
    r'^/cls_branches\.',
    r'^/lqe_layers\.',
    r'/cross_attn/sampling_offsets/',
    r'/cross_attn/attention_weights/',
)
BACKBONE_NECK_PATTERNS = (r'^/backbone/', r'^/neck/')
SCOPES = ('all', 'no-heads', 'backbone-neck')
DEFAULT_SCOPE = 'no-heads'


def select_nodes(onnx_model, scope: str = DEFAULT_SCOPE):
    """Split the quantisable nodes of ``onnx_model`` by ``scope``.

    Args:
        onnx_model (onnx.ModelProto): the FP32 graph.
        scope (str): one of :data:`SCOPES`.

    Returns:
        tuple[list[str], list[str]]: names of the Conv / MatMul / Gemm nodes
        to quantise and of those kept in FP32.
    """
    if scope not in SCOPES:
        raise ValueError(f'scope {scope!r}: expected one of {SCOPES}')
    quantise, keep = [], []
    for node in onnx_model.graph.node:
        if node.op_type not in QUANT_OP_TYPES:
            continue
        name = node.name
        if scope == 'all':
            fp32 = False
        elif scope == 'no-heads':
            fp32 = any(re.search(p, name) for p in HEAD_PATTERNS)
        else:
            fp32 = not any(re.search(p, name) for p in BACKBONE_NECK_PATTERNS)
        (keep if fp32 else quantise).append(name)
    if not quantise:
        raise ValueError(
            f'scope {scope!r} selects no Conv/MatMul/Gemm node of the graph '
            '(are the node names those of an MMDeploy D-FINE export?)')
    return quantise, keep


def calibration_inputs(deploy_cfg, model_cfg,
                       images: Sequence[str]) -> List[np.ndarray]:
    """Preprocess calibration images as the exported graph expects them.

    Args:
        deploy_cfg (str | Config): the deploy config of the export (its
            ``onnx_config.input_shape`` fixes H, W of a static graph).
        model_cfg (str | Config): the D-FINE model config (test pipeline,
            data preprocessor).
        images (Sequence[str]): image files.

    Returns:
        list[np.ndarray]: one float32 ``[1, 3, H, W]`` array per image
        (resized by the test pipeline, normalised by the data preprocessor).
    """
    from mmdeploy.utils import get_input_shape, load_config

    from .export import build_task_processor_cpu
    if not images:
        raise ValueError('calibration needs at least one image')
    missing = [p for p in images if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f'calibration image(s) not found: {", ".join(missing[:5])}')
    deploy_cfg, model_cfg = load_config(deploy_cfg, model_cfg)
    task_processor = build_task_processor_cpu(model_cfg, deploy_cfg)
    preprocessor = task_processor.build_data_preprocessor()
    shape = get_input_shape(deploy_cfg)
    arrays = []
    for path in images:
        _, inputs = task_processor.create_input(path, shape, preprocessor)
        arrays.append(inputs.detach().cpu().numpy().astype(np.float32))
    return arrays


def _input_name(onnx_model) -> str:
    initializers = {i.name for i in onnx_model.graph.initializer}
    names = [
        i.name for i in onnx_model.graph.input if i.name not in initializers
    ]
    if len(names) != 1:
        raise ValueError(f'expected one graph input, found {names}')
    return names[0]


def quantize_onnx(fp32_file: str,
                  int8_file: str,
                  calib: Sequence[np.ndarray],
                  scope: str = DEFAULT_SCOPE,
                  per_channel: bool = True,
                  reduce_range: bool = True) -> Dict[str, object]:
    """Write the QDQ INT8 version of ``fp32_file`` to ``int8_file``.

    Args:
        fp32_file (str): FP32 ONNX graph (MMDeploy end-to-end export).
        int8_file (str): output path.
        calib (Sequence[np.ndarray]): calibration inputs, each
            ``[B, 3, H, W]`` float32 at the graph's input shape (see
            :func:`calibration_inputs`).
        scope (str): which layers to quantise (:data:`SCOPES`).
        per_channel (bool): per-output-channel weight scales.
        reduce_range (bool): 7-bit weights (``|q| <= 64``), so that no x86
            integer kernel can saturate and the file computes the same on
            every CPU (see the module docstring). ``False`` uses the full
            int8 range: one more bit of weight precision, exact only on
            CPUs with VNNI or AMX.

    Returns:
        dict: ``quantised`` / ``kept_fp32`` node counts, the QDQ op counts
        of the written file (:func:`count_quant_ops`) and its
        :func:`int8_saturation_report` (``saturation_free``,
        ``max_abs_weight``, ``pair_bound``, ``layers_at_risk``).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if not osp.isfile(fp32_file):
        raise FileNotFoundError(f'ONNX file not found: {fp32_file}')
    if not len(calib):
        raise ValueError('calibration needs at least one input array')
    # shape inference and ORT's basic graph optimisations first (constant
    # folding, Conv+BN), as ORT's quantisation guide recommends; node names
    # of the Conv/MatMul/Gemm nodes are kept
    pre_file = int8_file[:-len('.onnx')] + '_pre.onnx' \
        if int8_file.endswith('.onnx') else int8_file + '_pre.onnx'
    for i, a in enumerate(calib):
        if a.ndim != 4 or a.dtype != np.float32:
            raise ValueError(f'calibration input {i}: expected float32 '
                             f'[B, 3, H, W], got {a.dtype} {a.shape}')
    quant_pre_process(fp32_file, pre_file, skip_symbolic_shape=True)
    try:
        quantise, keep = _quantize(pre_file, int8_file, calib, scope,
                                   per_channel, reduce_range)
    finally:
        os.remove(pre_file)
    report = int8_saturation_report(int8_file)
    return dict(
        quantised=len(quantise),
        kept_fp32=len(keep),
        reduce_range=reduce_range,
        **count_quant_ops(int8_file),
        **{
            k: report[k]
            for k in ('saturation_free', 'max_abs_weight', 'pair_bound',
                      'layers_at_risk')
        })


def _quantize(pre_file, int8_file, calib, scope, per_channel, reduce_range):
    """``quantize_static`` on the pre-processed graph; returns the names of
    the quantised and of the FP32 Conv/MatMul/Gemm nodes."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader,
                                          CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    pre = onnx.load(pre_file)
    input_name = _input_name(pre)
    quantise, keep = select_nodes(pre, scope)

    class Reader(CalibrationDataReader):

        def __init__(self):
            self._it = iter(calib)

        def get_next(self):
            a = next(self._it, None)
            return None if a is None else {input_name: a}

    quantize_static(
        pre_file,
        int8_file,
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANT_OP_TYPES),
        nodes_to_quantize=quantise,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax)
    return quantise, keep


def int8_saturation_report(model_file: str) -> Dict[str, object]:
    """Can an x86 ``uint8 x int8`` kernel without VNNI saturate on this QDQ
    graph? A static bound, independent of the CPU it is run on.

    For every ``Conv`` / ``MatMul`` / ``Gemm`` input that is a dequantised
    int8 initializer (a weight), the largest ``|q - zero_point|``. With
    uint8 activations, ``vpmaddubsw`` adds two products of at most
    ``255 * max|q|`` each into an int16; the graph is saturation-free when
    ``2 * 255 * max|q| <= 32767`` for every weight (``max|q| <= 64``).

    Args:
        model_file (str): QDQ ONNX file (:func:`quantize_onnx` output).

    Returns:
        dict: ``saturation_free`` (bool), ``max_abs_weight`` (largest
        ``|q - zp|``), ``pair_bound`` (``2 * 255 * max_abs_weight``),
        ``layers_at_risk`` (names of the nodes whose weights exceed the
        bound), ``num_weights`` (quantised weight inputs checked) and
        ``activation_types`` (element types of the quantised activations).
    """
    import onnx
    from onnx import numpy_helper
    model = onnx.load(model_file)
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    limit = INT16_MAX // (2 * UINT8_MAX)  # 64
    worst, at_risk, num_weights, act_types = 0, [], 0, set()
    for node in model.graph.node:
        if node.op_type not in QUANT_OP_TYPES:
            continue
        for inp in node.input[:2]:
            dq = producer.get(inp)
            if dq is None or dq.op_type != 'DequantizeLinear':
                continue
            if dq.input[0] not in inits:  # a quantised activation
                q = producer.get(dq.input[0])
                if q is not None and len(q.input) > 2 and q.input[2] in inits:
                    act_types.add(
                        onnx.TensorProto.DataType.Name(
                            inits[q.input[2]].data_type))
                continue
            w = numpy_helper.to_array(inits[dq.input[0]]).astype(np.int32)
            if len(dq.input) > 2 and dq.input[2] in inits:
                zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.int32)
                axis = next((a.i for a in dq.attribute if a.name == 'axis'), 1)
                if zp.ndim == 1 and zp.size > 1:
                    shape = [1] * w.ndim
                    shape[axis] = zp.size
                    zp = zp.reshape(shape)
                w = w - zp
            m = int(np.abs(w).max()) if w.size else 0
            num_weights += 1
            worst = max(worst, m)
            if m > limit:
                at_risk.append(node.name)
    return dict(
        saturation_free=not at_risk,
        max_abs_weight=worst,
        pair_bound=2 * UINT8_MAX * worst,
        layers_at_risk=at_risk,
        num_weights=num_weights,
        activation_types=sorted(act_types))


def cpu_int8_features() -> Dict[str, Optional[bool]]:
    """x86 features that decide which int8 kernels run here (Linux:
    ``/proc/cpuinfo`` flags; ``None`` where unknown).

    Returns:
        dict: ``avx2``, ``avx512bw``, ``vnni`` (AVX512-VNNI or AVX-VNNI:
        int32 dot products, no saturation), ``amx_int8``.
    """
    flags = None
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    break
    except OSError:
        pass
    if flags is None:
        return dict(avx2=None, avx512bw=None, vnni=None, amx_int8=None)
    return dict(
        avx2='avx2' in flags,
        avx512bw='avx512bw' in flags,
        vnni=bool({'avx512_vnni', 'avx_vnni'} & flags),
        amx_int8='amx_int8' in flags)


def describe_int8_portability(report: Dict[str, object],
                              features: Optional[Dict] = None) -> str:
    """One line for export logs: this CPU's int8 path and whether the graph
    (``report`` of :func:`int8_saturation_report`) computes the same on
    CPUs without VNNI."""
    features = cpu_int8_features() if features is None else features
    if features.get('vnni') is None:
        cpu = 'this CPU: int8 features unknown'
    elif features['vnni'] or features.get('amx_int8'):
        cpu = 'this CPU has VNNI/AMX (int32 dot products)'
    else:
        cpu = ('this CPU has no VNNI: u8s8 kernels use vpmaddubsw with '
               'saturating int16 pair sums')
    if report['saturation_free']:
        graph = (f'weights |q| <= {report["max_abs_weight"]}: pair sums '
                 f'<= {report["pair_bound"]} fit int16, no saturation on any '
                 'x86 CPU (VNNI or not)')
    else:
        graph = (f'weights up to |q| = {report["max_abs_weight"]} in '
                 f'{len(report["layers_at_risk"])} layer(s): pair sums up '
                 f'to {report["pair_bound"]} can saturate on CPUs without '
                 'VNNI (AVX2 / AVX-512 before VNNI), whose results then '
                 'differ from a VNNI CPU\'s; quantise with reduce_range')
    return f'{cpu}; {graph}'


def count_quant_ops(model_file: str) -> Dict[str, int]:
    """Quantisation ops of an ONNX file (``QuantizeLinear``,
    ``DequantizeLinear``) or an OpenVINO IR (``FakeQuantize``)."""
    names = ('QuantizeLinear', 'DequantizeLinear', 'FakeQuantize')
    if model_file.endswith('.xml'):
        import openvino as ov
        counts = Counter(op.get_type_name()
                         for op in ov.Core().read_model(model_file).get_ops())
    else:
        import onnx
        counts = Counter(n.op_type for n in onnx.load(model_file).graph.node)
    return {k: counts.get(k, 0) for k in names}


def onnx_to_openvino_ir(onnx_file: str, xml_file: Optional[str] = None) -> str:
    """Convert a (QDQ) ONNX file to an OpenVINO IR with FP32 weights beside
    the int8 ones (``compress_to_fp16=False``, as the FP32 backend); the QDQ
    pairs become ``FakeQuantize``. Returns the ``.xml`` path."""
    import openvino as ov
    xml_file = xml_file or osp.splitext(onnx_file)[0] + '.xml'
    ov.save_model(
        ov.convert_model(onnx_file), xml_file, compress_to_fp16=False)
    return xml_file
