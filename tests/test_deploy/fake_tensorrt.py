"""A stand-in for the TensorRT **10** Python API surface that
``dfine_mmdet.deploy.backends.tensorrt`` uses. It is NOT TensorRT and runs
no real engine.

TensorRT cannot be installed on the CPU CI machine. This module lets the
shim's logic (name-based I/O binding, profile checks, dtype mapping, FP32
layer pinning, builder flags) run against an object with the TensorRT 10 API
surface. In particular it has **none** of the binding-index methods that
TensorRT 10 removed (``binding_is_input``, ``get_binding_index``,
``get_binding_shape``, ``set_binding_shape``, ``execute_async_v2``), so code
that still calls them fails here as it would on TensorRT 10.

:class:`ICudaEngine` runs a fixed toy network. ``dets[b, k] = input[b].flat[
5k:5k+5] * 2`` and ``labels[b, k] = 10 b + k``. The execution context reads
and writes tensors through the raw addresses given to
``set_tensor_address``, the way the real runtime does.
"""
import ctypes
import json
import types

import numpy as np
import onnx

__version__ = '10.8.0'


class DataType:

    def __init__(self, name, np_dtype):
        self.name, self.np_dtype = name, np_dtype

    def __repr__(self):
        return f'DataType.{self.name}'


float32 = DataType('FLOAT', np.float32)
float16 = DataType('HALF', np.float16)
int32 = DataType('INT32', np.int32)
int64 = DataType('INT64', np.int64)
int8 = DataType('INT8', np.int8)
uint8 = DataType('UINT8', np.uint8)
bool = DataType('BOOL', np.bool_)  # noqa: A001  (TensorRT's name)

TensorIOMode = types.SimpleNamespace(
    NONE='NONE', INPUT='INPUT', OUTPUT='OUTPUT')
TensorLocation = types.SimpleNamespace(DEVICE='DEVICE', HOST='HOST')
LayerType = types.SimpleNamespace(
    CONVOLUTION='CONVOLUTION',
    ELEMENTWISE='ELEMENTWISE',
    NORMALIZATION='NORMALIZATION',
    SOFTMAX='SOFTMAX',
    SHAPE='SHAPE',
    TOPK='TOPK',
    GRID_SAMPLE='GRID_SAMPLE',
    MATRIX_MULTIPLY='MATRIX_MULTIPLY',
    OTHER='OTHER')
BuilderFlag = types.SimpleNamespace(
    FP16='FP16', TF32='TF32', OBEY_PRECISION_CONSTRAINTS='OBEY')
MemoryPoolType = types.SimpleNamespace(WORKSPACE='WORKSPACE')
NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)


class Logger:
    VERBOSE, INFO, WARNING, ERROR = range(4)

    def __init__(self, level=WARNING):
        self.level = level


def init_libnvinfer_plugins(logger, namespace):
    return True


# --------------------------------------------------------------------------
# network definition / builder
# --------------------------------------------------------------------------
_ONNX_TO_LAYER = dict(
    Conv='CONVOLUTION',
    LayerNormalization='NORMALIZATION',
    Softmax='SOFTMAX',
    Shape='SHAPE',
    TopK='TOPK',
    GridSample='GRID_SAMPLE',
    MatMul='MATRIX_MULTIPLY',
    Add='ELEMENTWISE',
    Mul='ELEMENTWISE',
    Sub='ELEMENTWISE',
    Div='ELEMENTWISE')
_INT_OUTPUT_OPS = {'Shape', 'ArgMax', 'NonZero'}


class ITensor:

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


class ILayer:

    def __init__(self, name, type, outputs):
        self.name, self.type = name, type
        self._outputs = outputs
        self._precision = None
        self.output_types = {}

    @property
    def num_outputs(self):
        return len(self._outputs)

    def get_output(self, i):
        return self._outputs[i]

    @property
    def precision(self):
        return self._precision

    @precision.setter
    def precision(self, dtype):
        self._precision = dtype

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


class INormalizationLayer(ILayer):
    compute_precision = None


class INetworkDefinition:

    def __init__(self, flags):
        self.flags = flags
        self.layers = []
        self.inputs = []

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, i):
        return self.layers[i]


class OnnxParser:

    def __init__(self, network, logger):
        self.network = network
        self.errors = []

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]

    def parse_from_file(self, path):
        model = onnx.load(path)
        for inp in model.graph.input:
            self.network.inputs.append(inp.name)
        for node in model.graph.node:
            if node.domain not in ('', 'ai.onnx'):
                self.errors.append(f'unsupported custom op {node.domain}::'
                                   f'{node.op_type}')
                continue
            outputs = []
            for j, name in enumerate(node.output):
                is_int = node.op_type in _INT_OUTPUT_OPS or (
                    node.op_type == 'TopK' and j == 1)
                outputs.append(ITensor(name, int64 if is_int else float32))
            self.network.layers.append(
                ILayer(node.name, _ONNX_TO_LAYER.get(node.op_type, 'OTHER'),
                       outputs))
        return not self.errors


class IOptimizationProfile:

    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):
        self.shapes[name] = (list(min), list(opt), list(max))


class IBuilderConfig:

    def __init__(self):
        self.flags = set()
        self.pool_limits = {}
        self.profiles = []

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def get_flag(self, flag):
        return flag in self.flags

    def set_memory_pool_limit(self, pool, size):
        self.pool_limits[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1


class Builder:
    last = None  # the most recent builder, for tests to inspect

    def __init__(self, logger):
        Builder.last = self
        self.network = self.config = None

    def create_network(self, flags=0):
        self.network = INetworkDefinition(flags)
        return self.network

    def create_builder_config(self):
        self.config = IBuilderConfig()
        return self.config

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        """A 'plan' that records what the build was asked to do."""
        pinned = [
            layer.name for layer in network.layers
            if layer.precision is float32
        ]
        return json.dumps(
            dict(
                flags=sorted(config.flags),
                pinned=pinned,
                profiles=[p.shapes for p in config.profiles])).encode()


# --------------------------------------------------------------------------
# runtime: a toy engine with the name-based TensorRT 10 API
# --------------------------------------------------------------------------
class ICudaEngine:
    """Toy engine: input ``input`` float32 [B, 3, 4, 4], B in 1..4; outputs
    ``dets`` float32 [B, 2, 5] and ``labels`` int64 [B, 2]."""

    def __init__(self, location=TensorLocation.HOST):
        self.location = location
        self._specs = {
            'input': (TensorIOMode.INPUT, float32, (-1, 3, 4, 4)),
            'dets': (TensorIOMode.OUTPUT, float32, (-1, 2, 5)),
            'labels': (TensorIOMode.OUTPUT, int64, (-1, 2)),
        }
        self._profile = ((1, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4))

    @property
    def num_io_tensors(self):
        return len(self._specs)

    def get_tensor_name(self, i):
        return list(self._specs)[i]

    def get_tensor_mode(self, name):
        return self._specs[name][0]

    def get_tensor_dtype(self, name):
        return self._specs[name][1]

    def get_tensor_shape(self, name):
        return self._specs[name][2]

    def get_tensor_location(self, name):
        return self.location

    def get_tensor_profile_shape(self, name, profile_index):
        if name != 'input' or profile_index != 0:
            raise RuntimeError(f'no profile shape for {name}/{profile_index}')
        return [list(s) for s in self._profile]

    def create_execution_context(self):
        return IExecutionContext(self)

    def serialize(self):
        return b'fake-engine'


def _view(address, shape, np_dtype):
    count = int(np.prod(shape))
    buf = (ctypes.c_char *
           (count * np.dtype(np_dtype).itemsize)).from_address(address)
    return np.frombuffer(buf, dtype=np_dtype, count=count).reshape(shape)


class IExecutionContext:

    def __init__(self, engine):
        self.engine = engine
        self.input_shapes = {}
        self.addresses = {}
        self.streams = []

    def set_input_shape(self, name, shape):
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            return False
        self.input_shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        batch = self.input_shapes.get('input', (-1, ))[0]
        return (batch, ) + tuple(self.engine.get_tensor_shape(name)[1:])

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle):
        self.streams.append(stream_handle)
        shape = self.input_shapes['input']
        x = _view(self.addresses['input'], shape, np.float32).copy()
        batch = shape[0]
        dets = _view(self.addresses['dets'], (batch, 2, 5), np.float32)
        labels = _view(self.addresses['labels'], (batch, 2), np.int64)
        flat = x.reshape(batch, -1)
        dets[...] = flat[:, :10].reshape(batch, 2, 5) * 2
        labels[...] = (10 * np.arange(batch)[:, None] + np.arange(2)[None])
        return True


class Runtime:

    def __init__(self, logger):
        pass

    def deserialize_cuda_engine(self, data):
        return ICudaEngine() if data == b'fake-engine' else None
