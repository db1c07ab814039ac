"""OpenVINO backend shim for MMDeploy 1.3.1 (OpenVINO >= 2024).

Why this exists: MMDeploy 1.3.1's ``openvino`` backend was written for the
OpenVINO 2022 APIs that current OpenVINO no longer has:

* ``mmdeploy.backend.openvino.onnx2openvino.from_onnx`` shells out to the
  Model Optimizer (``mo``), shipped by ``openvino-dev``, which was removed in
  OpenVINO 2025.0; with ``openvino`` 2026.x it raises ``OpenVINO Model
  Optimizer is not found``;
* ``mmdeploy.backend.openvino.wrapper.OpenVINOWrapper`` imports
  ``openvino.inference_engine.IECore`` (removed in 2024.0) and asserts batch 1.

:func:`apply_mmdeploy_openvino_shim` (called when :mod:`dfine_mmdet.deploy`
is imported and ``openvino`` is importable) registers, under the same
backend name ``openvino``:

* a backend manager whose ``to_backend`` converts the ONNX file with
  ``openvino.convert_model`` and writes ``<name>.xml`` / ``<name>.bin`` with
  ``openvino.save_model`` (FP32 weights, ``compress_to_fp16=False``, so that
  ``--check`` holds the ONNX Runtime tolerances);
* :class:`OpenVINOWrapper2024`, which runs the IR with ``openvino.Core`` on
  the CPU and supports a dynamic batch axis.

Deploy config fields read (``backend_config``)::

    backend_config = dict(
        type='openvino',
        # shape given to convert_model; -1 marks a dynamic axis
        model_inputs=[dict(opt_shapes=dict(input=[-1, 3, 640, 640]))],
        # optional: properties for Core.compile_model
        compile_config=dict(PERFORMANCE_HINT='LATENCY',
                            INFERENCE_PRECISION_HINT='f32'))

Nothing here changes MMDeploy's files; the registration replaces the
registry entries of the running process only.
"""
import logging
import os.path as osp
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from mmdeploy.backend.base import BaseWrapper

from ..input_shape_check import check_input_shapes, openvino_input_shapes

logger = logging.getLogger(__name__)

#: properties passed to ``Core.compile_model`` unless the deploy config or
#: the caller overrides them. LATENCY: one inference request, all streams on
#: one image (the batch-1 use case of a real-time detector). f32: on CPUs
#: with BF16 support OpenVINO otherwise computes in bfloat16 by default,
#: which moved D-FINE-N boxes by up to ~290 px (other queries selected) on
#: the deploy test model; ``INFERENCE_PRECISION_HINT='bf16'`` opts in.
DEFAULT_COMPILE_CONFIG = {
    'PERFORMANCE_HINT': 'LATENCY',
    'INFERENCE_PRECISION_HINT': 'f32'
}


def openvino_version() -> Optional[tuple]:
    """``(major, minor, patch)`` of the importable ``openvino``, else None."""
    try:
        import openvino
    except ImportError:
        return None
    text = openvino.get_version() if hasattr(openvino, 'get_version') \
        else openvino.__version__
    parts = []
    for piece in text.split('-')[0].split('.')[:3]:
        digits = ''.join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def compile_ir(model_file: str,
               num_threads: Optional[int] = None,
               config: Optional[Dict[str, Any]] = None):
    """Read an IR (``.xml``) or ONNX file and compile it for the CPU.

    Args:
        model_file (str): ``.xml`` (with its ``.bin`` beside it) or ``.onnx``.
        num_threads (int, optional): ``INFERENCE_NUM_THREADS``.
        config (dict, optional): more ``compile_model`` properties; they
            override :data:`DEFAULT_COMPILE_CONFIG`.

    Returns:
        openvino.CompiledModel
    """
    import openvino as ov
    if not osp.isfile(model_file):
        raise FileNotFoundError(f'OpenVINO model file not found: {model_file}')
    props = dict(DEFAULT_COMPILE_CONFIG)
    props.update(config or {})
    if num_threads is not None:
        props['INFERENCE_NUM_THREADS'] = int(num_threads)
    core = ov.Core()
    return core.compile_model(core.read_model(model_file), 'CPU', props)


class OpenVINOWrapper2024(BaseWrapper):
    """Runs an OpenVINO IR on the CPU with the ``openvino`` >= 2024 API.

    MMDeploy's ``BaseWrapper`` interface:
    ``forward(dict(input=Tensor[B, 3, H, W]))`` returns ``{name: Tensor}`` for
    every ``output_names`` entry (for D-FINE ``dets [B, K, 5]`` and
    ``labels [B, K]``). Any batch size works when the IR was converted with a
    dynamic batch axis.

    Args:
        ir_model_file (str): the ``.xml`` file.
        output_names (Sequence[str], optional): outputs to return, in order;
            default: every output of the model.
        num_threads (int, optional): ``INFERENCE_NUM_THREADS``.
        compile_config (dict, optional): extra ``compile_model`` properties.
        deploy_cfg (optional): the deploy config, named in the error raised
            for an input of a shape the IR was not built for
            (``InputShapeMismatchError`` of
            :mod:`dfine_mmdet.deploy.input_shape_check` instead of
            OpenVINO's ``ParameterMismatch``).
    """

    def __init__(self,
                 ir_model_file: str,
                 output_names: Optional[Sequence[str]] = None,
                 num_threads: Optional[int] = None,
                 compile_config: Optional[Dict[str, Any]] = None,
                 deploy_cfg: Optional[Any] = None,
                 **kwargs):
        compiled = compile_ir(ir_model_file, num_threads, compile_config)
        available = [out.get_any_name() for out in compiled.outputs]
        if output_names is None:
            output_names = available
        missing = [n for n in output_names if n not in available]
        if missing:
            raise KeyError(f'{ir_model_file} has no output(s) {missing}; '
                           f'it has {available}')
        super().__init__(list(output_names))
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.ir_model_file = ir_model_file
        self.deploy_cfg = deploy_cfg
        self.input_shapes = openvino_input_shapes(compiled)

    def forward(self, inputs: Dict[str,
                                   torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Args: inputs: ``{input_name: Tensor}`` (any device; run on CPU).
        Returns: ``{output_name: Tensor}`` on the CPU."""
        check_input_shapes(self.input_shapes, {
            k: tuple(v.shape)
            for k, v in inputs.items()
        }, self.ir_model_file, self.deploy_cfg)
        feed = {
            name: np.ascontiguousarray(t.detach().cpu().numpy())
            for name, t in inputs.items()
        }
        results = self.request.infer(feed)
        by_name = {}
        for port, value in results.items():
            by_name[port.get_any_name()] = torch.from_numpy(np.array(value))
        return {name: by_name[name] for name in self._output_names}


def convert_onnx_to_ir(
        onnx_file: str,
        xml_file: str,
        input_shapes: Optional[Dict[str, Sequence[int]]] = None) -> str:
    """Convert ``onnx_file`` to an FP32 IR at ``xml_file`` (+ ``.bin``).

    Args:
        onnx_file (str): the exported ONNX model.
        xml_file (str): output path ending in ``.xml``.
        input_shapes (dict, optional): ``{input_name: shape}`` with ``-1`` for
            a dynamic axis; default: the shapes stored in the ONNX file.

    Returns:
        str: ``xml_file``.
    """
    import openvino as ov
    if not osp.isfile(onnx_file):
        raise FileNotFoundError(f'ONNX file not found: {onnx_file}')
    kwargs = {}
    if input_shapes:
        kwargs['input'] = [(name, ov.PartialShape([int(d) for d in shape]))
                           for name, shape in input_shapes.items()]
    model = ov.convert_model(onnx_file, **kwargs)
    ov.save_model(model, xml_file, compress_to_fp16=False)
    return xml_file


def _input_shapes_from_cfg(deploy_cfg) -> Optional[Dict[str, Sequence[int]]]:
    from mmdeploy.utils import get_backend_config
    inputs = get_backend_config(deploy_cfg).get('model_inputs') or []
    if not inputs:
        return None
    return dict(inputs[0].get('opt_shapes', {})) or None


class _OpenVINOShimManagerMixin:
    """Overrides of MMDeploy's ``OpenVINOManager`` (see module docstring)."""

    @classmethod
    def build_wrapper(cls,
                      backend_files: Sequence[str],
                      device: str = 'cpu',
                      input_names: Optional[Sequence[str]] = None,
                      output_names: Optional[Sequence[str]] = None,
                      deploy_cfg: Optional[Any] = None,
                      **kwargs):
        compile_config = None
        if deploy_cfg is not None:
            from mmdeploy.utils import get_backend_config, load_config
            deploy_cfg = load_config(deploy_cfg)[0]
            compile_config = get_backend_config(deploy_cfg).get(
                'compile_config')
        return OpenVINOWrapper2024(
            backend_files[0],
            output_names=output_names,
            compile_config=compile_config,
            deploy_cfg=deploy_cfg)

    @classmethod
    def to_backend(cls,
                   ir_files: Sequence[str],
                   work_dir: str,
                   deploy_cfg: Any,
                   log_level: int = logging.INFO,
                   device: str = 'cpu',
                   **kwargs) -> Sequence[str]:
        from mmdeploy.utils import load_config
        deploy_cfg = load_config(deploy_cfg)[0]
        shapes = _input_shapes_from_cfg(deploy_cfg)
        files = []
        for onnx_file in ir_files:
            name = osp.splitext(osp.basename(onnx_file))[0]
            xml_file = osp.join(work_dir, name + '.xml')
            convert_onnx_to_ir(onnx_file, xml_file, shapes)
            logger.info('wrote %s (OpenVINO IR, FP32)', xml_file)
            files.append(xml_file)
        return files


_OV_SHIM_APPLIED = False


def apply_mmdeploy_openvino_shim(force: bool = False) -> bool:
    """Register the OpenVINO >= 2024 manager and wrapper as MMDeploy's
    ``openvino`` backend. Runs when ``openvino`` >= 2024 is importable (or
    with ``force``). Returns whether the shim is active."""
    global _OV_SHIM_APPLIED
    if _OV_SHIM_APPLIED:
        return True
    version = openvino_version()
    if not force and (version is None or version[0] < 2024):
        return False
    from mmdeploy.backend.base import BACKEND_MANAGERS, BACKEND_WRAPPER
    from mmdeploy.backend.openvino.backend_manager import OpenVINOManager
    manager = type('DFINEOpenVINOManager',
                   (_OpenVINOShimManagerMixin, OpenVINOManager), {})
    manager.__module__ = __name__
    BACKEND_MANAGERS.register('openvino')(manager)
    BACKEND_WRAPPER.register_module(
        'openvino', module=OpenVINOWrapper2024, force=True)
    _OV_SHIM_APPLIED = True
    return True
