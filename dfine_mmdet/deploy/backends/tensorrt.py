"""TensorRT shims of dfine_mmdet for MMDeploy 1.3.1 (moved from
``dfine_mmdet/compat.py``).

Every shim names the TensorRT version it fixes and why, and is only applied
when that version is present.

1. :class:`TensorRT10Wrapper` (TensorRT >= 10 with MMDeploy 1.3.1).
   MMDeploy 1.3.1's ``mmdeploy.backend.tensorrt.wrapper.TRTWrapper`` uses the
   binding-index API that TensorRT 10 removed (``binding_is_input``,
   ``get_binding_index``, ``get_profile_shape``, ``set_binding_shape``,
   ``get_binding_dtype``, ``execute_async_v2``; open-mmlab/mmdeploy#2758).
   This replacement uses the name-based I/O tensor API (``num_io_tensors``,
   ``get_tensor_name/mode/dtype/location``, ``get_tensor_profile_shape``,
   ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``).
   :func:`apply_mmdeploy_tensorrt_shim` registers it. That happens only when
   ``tensorrt >= 10`` can be imported.

2. :func:`build_tensorrt_engine` (any TensorRT 8.6-10.x with MMDeploy 1.3.1).
   MMDeploy's ``from_onnx`` has no way to keep single layers in FP32 under
   ``fp16_mode``. The RT-DETR / D-FINE family is known to collapse in FP16
   TensorRT engines (LayerNorm after attention overflows; Peterande/D-FINE #44
   and #98, DEIMv2 #60 and #112). This builder reads two **dfine_mmdet
   extension keys** in ``backend_config.common_config``:
   ``fp32_layer_types`` (``tensorrt.LayerType`` names, e.g.
   ``['NORMALIZATION', 'SOFTMAX']``) and ``fp32_layer_name_patterns``
   (regexes on the layer name, which is the ONNX node name). It sets those
   layers' precision and output types to FP32, sets the ``compute_precision``
   of normalisation layers, and turns on
   ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``. Stock MMDeploy ignores the two
   keys, so ``dfine_mmdet`` must be imported before the conversion runs.
   ``tools/deploy.py`` imports it. TensorRT 11 removed weakly typed FP16
   builds (``BuilderFlag.FP16``, ``OBEY_PRECISION_CONSTRAINTS``). On
   TensorRT 11 an FP16 config gives a clear error that points to ModelOpt
   AutoCast.

None of the TensorRT code has run against a real TensorRT in this
repository's CI, which is CPU only. ``tests/test_deploy/test_compat.py``
runs it against a small stand-in module that has only the TensorRT 10 Python
API surface.
"""
import importlib
import importlib.util
import logging
import os.path as osp
import re
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

logger = logging.getLogger(__name__)


def tensorrt_version() -> Optional[tuple]:
    """``(major, minor)`` of the importable ``tensorrt`` or None.

    The lookup is cheap: ``find_spec`` runs first, so ``tensorrt`` is only
    imported when it is installed.
    """
    if importlib.util.find_spec('tensorrt') is None:
        return None
    try:
        trt = importlib.import_module('tensorrt')
    except Exception as err:  # e.g. bindings without libnvinfer
        logger.warning('tensorrt is installed but cannot be imported: %s', err)
        return None
    return _parse_version(trt.__version__)


def _parse_version(text: str) -> tuple:
    nums = re.findall(r'\d+', text)
    return tuple(int(n) for n in (nums + ['0', '0'])[:2])


def _torch_dtype_from_trt(trt, dtype) -> torch.dtype:
    """torch dtype for a ``tensorrt.DataType``; TRT 10 adds int64/bf16."""
    table = [('float32', torch.float32), ('float16', torch.float16),
             ('bfloat16', torch.bfloat16), ('int64', torch.int64),
             ('int32', torch.int32), ('int8', torch.int8),
             ('uint8', torch.uint8), ('bool', torch.bool)]
    for trt_name, torch_dtype in table:
        if hasattr(trt, trt_name) and dtype == getattr(trt, trt_name):
            return torch_dtype
    raise TypeError(
        f'TensorRT dtype {dtype} has no torch equivalent '
        '(dfine_mmdet.deploy.backends.tensorrt._torch_dtype_from_trt)')


try:  # MMDeploy's abstract wrapper base, when MMDeploy is installed.
    from mmdeploy.backend.base import BaseWrapper as _WrapperBase
except ImportError:  # keep the class importable (and testable) without it

    class _WrapperBase(torch.nn.Module):
        """Same interface as ``mmdeploy.backend.base.BaseWrapper``."""

        def __init__(self, output_names):
            super().__init__()
            self._output_names = output_names

        @staticmethod
        def get_backend_file_count() -> int:
            return 1

        @property
        def output_names(self):
            return self._output_names

        @output_names.setter
        def output_names(self, value):
            self._output_names = value

        def output_to_list(self, output_dict):
            return [output_dict[name] for name in self._output_names]


class TensorRT10Wrapper(_WrapperBase):
    """TensorRT engine wrapper with the name-based TensorRT >= 10 API.

    A drop-in replacement for MMDeploy 1.3.1's ``TRTWrapper`` (same
    constructor arguments and ``forward(dict) -> dict``). It never calls the
    binding-index API that TensorRT 10 removed.

    Args:
        engine (str | tensorrt.ICudaEngine): serialized engine path or an
            engine object.
        output_names (Sequence[str], optional): output order for
            ``output_to_list``. Defaults to the engine's output order.
        device_id (int): CUDA device for outputs located on the device.
        trt_module (module, optional): the ``tensorrt`` module to use.
            Defaults to ``import tensorrt``. Tests pass a stand-in module
            that has only the TensorRT 10 API surface.
    """

    def __init__(self,
                 engine: Union[str, Any],
                 output_names: Optional[Sequence[str]] = None,
                 device_id: int = 0,
                 trt_module: Any = None):
        super().__init__(output_names)
        self._trt = trt_module or importlib.import_module('tensorrt')
        if isinstance(engine, str):
            engine = load_tensorrt_engine(engine, trt_module=self._trt)
        if engine is None or not hasattr(engine, 'num_io_tensors'):
            raise TypeError(
                'TensorRT10Wrapper needs a TensorRT >= 10 ICudaEngine (with '
                f'`num_io_tensors`) or an engine file, got {type(engine)}')
        self.engine = engine
        self.device_id = device_id
        self.context = engine.create_execution_context()
        self._profile_id = 0
        names = [
            engine.get_tensor_name(i) for i in range(engine.num_io_tensors)
        ]
        mode_input = self._trt.TensorIOMode.INPUT
        self._input_names = [
            n for n in names if engine.get_tensor_mode(n) == mode_input
        ]
        if self._output_names is None:
            self._output_names = [
                n for n in names if n not in self._input_names
            ]

    def _on_device(self, name: str) -> bool:
        return (self.engine.get_tensor_location(name) ==
                self._trt.TensorLocation.DEVICE)

    def forward(self, inputs: Dict[str,
                                   torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Run the engine.

        Args:
            inputs (dict[str, Tensor]): input name to tensor. Tensors bound to
                device-located engine inputs must be CUDA tensors.

        Returns:
            dict[str, Tensor]: output name to tensor, in the engine's dtypes.
        """
        engine, context = self.engine, self.context
        keep_alive = []
        uses_cuda = False
        for name in self._input_names:
            if name not in inputs:
                raise KeyError(f'TensorRT engine input `{name}` missing from '
                               f'inputs {sorted(inputs)}')
        for name, tensor in inputs.items():
            if name not in self._input_names:
                raise KeyError(f'`{name}` is not an input of the TensorRT '
                               f'engine (inputs: {self._input_names})')
            want = _torch_dtype_from_trt(self._trt,
                                         engine.get_tensor_dtype(name))
            tensor = tensor.to(want).contiguous()
            lo, _, hi = engine.get_tensor_profile_shape(name, self._profile_id)
            shape = tuple(tensor.shape)
            if len(shape) != len(lo) or not all(
                    a <= s <= b for a, s, b in zip(lo, shape, hi)):
                raise ValueError(
                    f'input `{name}` has shape {shape}, outside the engine '
                    f'profile [{tuple(lo)}, {tuple(hi)}]')
            if self._on_device(name):
                if not tensor.is_cuda:
                    raise ValueError(f'input `{name}` must be a CUDA tensor '
                                     'for this TensorRT engine')
                uses_cuda = True
            if not context.set_input_shape(name, shape):
                raise RuntimeError(f'TensorRT rejected shape {shape} for '
                                   f'input `{name}`')
            context.set_tensor_address(name, tensor.data_ptr())
            keep_alive.append(tensor)

        outputs = {}
        for name in self._output_names:
            dtype = _torch_dtype_from_trt(self._trt,
                                          engine.get_tensor_dtype(name))
            shape = tuple(context.get_tensor_shape(name))
            if any(s < 0 for s in shape):
                raise RuntimeError(f'output `{name}` shape {shape} unresolved;'
                                   ' were all input shapes set?')
            device = (
                torch.device('cuda', self.device_id)
                if self._on_device(name) else torch.device('cpu'))
            out = torch.empty(shape, dtype=dtype, device=device)
            context.set_tensor_address(name, out.data_ptr())
            outputs[name] = out

        stream = (
            torch.cuda.current_stream(self.device_id).cuda_stream
            if uses_cuda else 0)
        if not context.execute_async_v3(stream):
            raise RuntimeError('TensorRT execute_async_v3 failed')
        # `keep_alive` (dtype-converted inputs) may be freed now: the caching
        # allocator only reuses that memory for later work on this stream.
        return outputs


def load_tensorrt_engine(path: str, trt_module: Any = None):
    """Deserialize an engine file with the TensorRT >= 8 runtime API.

    It does not need MMDeploy's plugin library, because D-FINE graphs
    exported by dfine_mmdet use only standard ONNX ops.
    """
    trt = trt_module or importlib.import_module('tensorrt')
    if not osp.isfile(path):
        raise FileNotFoundError(f'TensorRT engine file not found: {path}')
    trt_logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(trt_logger, '')
    runtime = trt.Runtime(trt_logger)
    with open(path, 'rb') as f:
        engine = runtime.deserialize_cuda_engine(f.read())
    if engine is None:
        raise RuntimeError(f'TensorRT could not deserialize {path} (built '
                           'by another TensorRT version or GPU?)')
    return engine


# fp16 precision constraints ------------------------------------------------

#: dfine_mmdet extension keys of ``backend_config.common_config``.
FP32_LAYER_TYPES_KEY = 'fp32_layer_types'
FP32_LAYER_PATTERNS_KEY = 'fp32_layer_name_patterns'


def pin_layers_to_fp32(network: Any,
                       layer_types: Sequence[str] = (),
                       name_patterns: Sequence[str] = (),
                       trt_module: Any = None) -> List[str]:
    """Keep the matching layers of a parsed network in FP32.

    A layer matches when its ``type`` is one of ``layer_types`` (names of
    ``tensorrt.LayerType`` members) or its name matches one of the
    ``name_patterns`` regexes (``re.search``). A matching layer gets
    ``precision = float32``, every floating-point output gets
    ``set_output_type(i, float32)``, and a normalisation layer also gets
    ``compute_precision = float32``. The builder only obeys these settings
    with ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``, which
    :func:`build_tensorrt_engine` turns on.

    Returns:
        list[str]: names of the pinned layers.
    """
    trt = trt_module or importlib.import_module('tensorrt')
    wanted = []
    for name in layer_types:
        if not hasattr(trt.LayerType, name):
            raise ValueError(
                f'backend_config.common_config.{FP32_LAYER_TYPES_KEY}: '
                f'`{name}` is not a tensorrt.LayerType member')
        wanted.append(getattr(trt.LayerType, name))
    regexes = [re.compile(p) for p in name_patterns]
    float_types = [trt.float32, trt.float16]
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not (layer.type in wanted
                or any(r.search(layer.name) for r in regexes)):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in float_types:
                layer.set_output_type(j, trt.float32)
        if (layer.type == getattr(trt.LayerType, 'NORMALIZATION', None)
                and hasattr(trt, 'INormalizationLayer')):
            # the Python API needs the concrete class to expose the field
            layer.__class__ = trt.INormalizationLayer
            layer.compute_precision = trt.float32
        pinned.append(layer.name)
    return pinned


def build_tensorrt_engine(onnx_file: str,
                          engine_file: str,
                          input_shapes: Dict[str, Dict[str, Sequence[int]]],
                          fp16_mode: bool = False,
                          max_workspace_size: int = 0,
                          fp32_layer_types: Sequence[str] = (),
                          fp32_layer_name_patterns: Sequence[str] = (),
                          device_id: int = 0,
                          log_level: Any = None,
                          trt_module: Any = None) -> List[str]:
    """Build and save a TensorRT engine from an ONNX file.

    This is a TensorRT 8.6 / 10.x-safe version of MMDeploy's ``from_onnx``
    with FP32 layer pinning (see the module docstring, shim 3).

    Args:
        onnx_file (str): ONNX model path.
        engine_file (str): where the serialized engine is written.
        input_shapes (dict): ``{input: dict(min_shape, opt_shape,
            max_shape)}``, as in MMDeploy's ``model_inputs``.
        fp16_mode (bool): allow FP16 kernels (weak typing; TensorRT <= 10).
        max_workspace_size (int): workspace pool limit in bytes; 0 means the
            TensorRT default.
        fp32_layer_types / fp32_layer_name_patterns: layers kept in FP32
            under ``fp16_mode``; see :func:`pin_layers_to_fp32`.
        device_id (int): CUDA device to build on.
        log_level: a ``tensorrt.Logger.Severity``; defaults to WARNING.
        trt_module (module, optional): the ``tensorrt`` module (tests).

    Returns:
        list[str]: names of the layers that were kept in FP32.
    """
    trt = trt_module or importlib.import_module('tensorrt')
    major = _parse_version(trt.__version__)[0]
    if device_id and torch.cuda.is_available():
        torch.cuda.set_device(device_id)
    trt_logger = trt.Logger(trt.Logger.WARNING if log_level is
                            None else log_level)
    trt.init_libnvinfer_plugins(trt_logger, '')
    builder = trt.Builder(trt_logger)
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, 'EXPLICIT_BATCH',
                       None)
    if major < 10 and explicit is not None:  # implicit batch is gone in 10
        flags = 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(onnx_file):
        errors = '\n'.join(
            str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f'TensorRT could not parse {onnx_file}:\n{errors}')

    config = builder.create_builder_config()
    if max_workspace_size:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
                                     int(max_workspace_size))
    profile = builder.create_optimization_profile()
    for name, shapes in input_shapes.items():
        profile.set_shape(name, shapes['min_shape'], shapes['opt_shape'],
                          shapes['max_shape'])
    if config.add_optimization_profile(profile) < 0:
        raise RuntimeError(f'invalid TensorRT optimization profile for '
                           f'{input_shapes}')

    pinned = []
    if fp16_mode:
        if not hasattr(trt.BuilderFlag, 'FP16'):
            raise RuntimeError(
                f'TensorRT {trt.__version__} has no BuilderFlag.FP16: '
                'TensorRT >= 11 builds strongly typed networks only. Convert '
                'the FP32 ONNX to mixed precision first (NVIDIA ModelOpt '
                'AutoCast, keeping LayerNormalization/Softmax in FP32) and '
                'build it with an fp32 deploy config.')
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = pin_layers_to_fp32(network, fp32_layer_types,
                                    fp32_layer_name_patterns, trt)
        if pinned:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            logger.info('TensorRT fp16: kept %d layers in fp32', len(pinned))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f'TensorRT failed to build an engine from '
                           f'{onnx_file} (see the TensorRT log above)')
    with open(engine_file, 'wb') as f:
        f.write(bytes(serialized))
    return pinned


class _TensorRTShimManagerMixin:
    """Overrides for MMDeploy's ``TensorRTManager`` (registered by
    :func:`apply_mmdeploy_tensorrt_shim` as backend ``tensorrt``)."""

    @classmethod
    def build_wrapper(cls,
                      backend_files: Sequence[str],
                      device: str = 'cpu',
                      input_names: Optional[Sequence[str]] = None,
                      output_names: Optional[Sequence[str]] = None,
                      deploy_cfg: Optional[Any] = None,
                      **kwargs):
        version = tensorrt_version()
        if version is None or version[0] < 10:
            return super().build_wrapper(backend_files, device, input_names,
                                         output_names, deploy_cfg, **kwargs)
        from mmdeploy.utils import parse_device_id
        device_id = parse_device_id(device)
        return TensorRT10Wrapper(
            engine=backend_files[0],
            output_names=output_names,
            device_id=max(device_id or 0, 0))

    @classmethod
    def to_backend(cls,
                   ir_files: Sequence[str],
                   work_dir: str,
                   deploy_cfg: Any,
                   log_level: int = logging.INFO,
                   device: str = 'cpu',
                   **kwargs) -> Sequence[str]:
        from mmdeploy.utils import (get_common_config, get_model_inputs,
                                    load_config, parse_device_id)
        deploy_cfg = load_config(deploy_cfg)[0]
        common = dict(get_common_config(deploy_cfg))
        version = tensorrt_version()
        wants_pins = bool(
            common.get(FP32_LAYER_TYPES_KEY)
            or common.get(FP32_LAYER_PATTERNS_KEY))
        if common.get('int8_mode') or not (version and version[0] >= 10
                                           or wants_pins):
            # INT8 calibration and plain TRT < 10 builds: MMDeploy's builder.
            return super().to_backend(ir_files, work_dir, deploy_cfg,
                                      log_level, device, **kwargs)
        if not device.startswith('cuda'):
            raise ValueError(f'TensorRT needs a CUDA device, got `{device}`')
        model_inputs = get_model_inputs(deploy_cfg)
        if len(model_inputs) != len(ir_files):
            raise ValueError(
                f'backend_config.model_inputs has {len(model_inputs)} '
                f'entries for {len(ir_files)} ONNX files')
        backend_files = []
        for onnx_file, params in zip(ir_files, model_inputs):
            final = dict(common)
            final.update(params)
            name = osp.splitext(osp.basename(onnx_file))[0]
            save_file = final.get('save_file', name + '.engine')
            engine_file = osp.join(work_dir, save_file)
            pinned = build_tensorrt_engine(
                onnx_file,
                engine_file,
                input_shapes=final['input_shapes'],
                fp16_mode=final.get('fp16_mode', False),
                max_workspace_size=final.get('max_workspace_size', 0),
                fp32_layer_types=final.get(FP32_LAYER_TYPES_KEY, ()),
                fp32_layer_name_patterns=final.get(FP32_LAYER_PATTERNS_KEY,
                                                   ()),
                device_id=parse_device_id(device))
            logger.info('wrote %s (%d layers pinned to fp32)', engine_file,
                        len(pinned))
            backend_files.append(engine_file)
        return backend_files


_TRT_SHIM_APPLIED = False


def apply_mmdeploy_tensorrt_shim(force: bool = False) -> bool:
    """Register the TensorRT shims with MMDeploy's backend registries.

    It runs only when ``tensorrt`` is importable, or when ``force`` is set
    (tests). The backend manager ``tensorrt`` becomes a subclass of
    MMDeploy's ``TensorRTManager``. Its ``build_wrapper`` returns a
    :class:`TensorRT10Wrapper` on TensorRT >= 10. Its ``to_backend`` uses
    :func:`build_tensorrt_engine` on TensorRT >= 10 or when FP32 layer
    pinning is configured. With TensorRT >= 10, ``BACKEND_WRAPPER['tensorrt']``
    also points to :class:`TensorRT10Wrapper`.

    Returns:
        bool: whether the shim is active.
    """
    global _TRT_SHIM_APPLIED
    if _TRT_SHIM_APPLIED:
        return True
    version = tensorrt_version()
    if version is None and not force:
        return False
    # import MMDeploy's own TensorRT backend first so that its registration
    # runs before ours (BACKEND_MANAGERS.find imports it lazily otherwise)
    importlib.import_module('mmdeploy.backend.tensorrt')
    from mmdeploy.backend.base import BACKEND_MANAGERS, BACKEND_WRAPPER
    from mmdeploy.backend.tensorrt.backend_manager import TensorRTManager

    manager = type('DFINETensorRTManager',
                   (_TensorRTShimManagerMixin, TensorRTManager), {})
    manager.__module__ = __name__
    BACKEND_MANAGERS.register('tensorrt')(manager)
    if version is not None and version[0] >= 10:
        BACKEND_WRAPPER.register_module(
            'tensorrt', module=TensorRT10Wrapper, force=True)
    _TRT_SHIM_APPLIED = True
    return True
