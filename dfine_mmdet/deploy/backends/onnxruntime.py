"""ONNX Runtime backend of MMDeploy 1.3.1 with an input-shape check.

Why this exists: MMDeploy 1.3.1's ``ORTWrapper`` binds whatever tensor it is
given, so an input of a size the static graph was not built for fails deep in
``run_with_iobinding`` with ONNX Runtime's ``INVALID_ARGUMENT : Got invalid
dimensions for input`` (no deploy config, no hint).
:class:`ShapeCheckedORTWrapper` is the same wrapper with
:func:`~dfine_mmdet.deploy.input_shape_check.check_input_shapes` before the
run, and :func:`apply_mmdeploy_ort_shape_check` registers a manager
whose ``build_wrapper`` returns it, so every MMDeploy path that builds an ONNX
Runtime model (``build_backend_model``, ``inference_model``, ``tools/deploy.py
--check``) gets the check. The registration replaces the registry entry of the
running process only; MMDeploy's files are unchanged.
"""
import functools
import importlib.util
from typing import Any, Dict, Optional, Sequence

import torch

from ..input_shape_check import check_input_shapes, onnxruntime_input_shapes

_ORT_CHECK_APPLIED = False


@functools.lru_cache(maxsize=None)
def _shape_checked_wrapper_cls():
    from mmdeploy.backend.onnxruntime.wrapper import ORTWrapper

    class ShapeCheckedORTWrapper(ORTWrapper):
        """``ORTWrapper`` that raises ``InputShapeMismatchError`` (naming the
        expected and given shapes, the ONNX file and the deploy config)
        instead of ONNX Runtime's INVALID_ARGUMENT.

        Args:
            onnx_file (str): the ONNX file.
            device (str): ``cpu`` or ``cuda:N``.
            output_names (Sequence[str], optional): outputs, in order.
            deploy_cfg: the deploy config, named in the error.
        """

        def __init__(self,
                     onnx_file: str,
                     device: str,
                     output_names: Optional[Sequence[str]] = None,
                     deploy_cfg: Any = None):
            super().__init__(onnx_file, device, output_names)
            self.onnx_file = onnx_file
            self.deploy_cfg = deploy_cfg
            self.input_shapes = onnxruntime_input_shapes(self.sess)

        def forward(
                self, inputs: Dict[str,
                                   torch.Tensor]) -> Dict[str, torch.Tensor]:
            """Args: inputs: ``{'input': Tensor[B, 3, H, W]}``.
            Returns: ``{'dets': [B, K, 5], 'labels': [B, K]}``."""
            check_input_shapes(self.input_shapes, {
                k: tuple(v.shape)
                for k, v in inputs.items()
            }, self.onnx_file, self.deploy_cfg)
            return super().forward(inputs)

    ShapeCheckedORTWrapper.__qualname__ = 'ShapeCheckedORTWrapper'
    ShapeCheckedORTWrapper.__module__ = __name__
    return ShapeCheckedORTWrapper


class _ORTShapeCheckManagerMixin:

    @classmethod
    def build_wrapper(cls,
                      backend_files: Sequence[str],
                      device: str = 'cpu',
                      input_names: Optional[Sequence[str]] = None,
                      output_names: Optional[Sequence[str]] = None,
                      deploy_cfg: Optional[Any] = None,
                      **kwargs):
        return _shape_checked_wrapper_cls()(
            onnx_file=backend_files[0],
            device=device,
            output_names=output_names,
            deploy_cfg=deploy_cfg)


def apply_mmdeploy_ort_shape_check() -> bool:
    """Register the shape-checking manager as MMDeploy's ``onnxruntime``
    backend (when ``onnxruntime`` is importable). Returns whether active."""
    global _ORT_CHECK_APPLIED
    if _ORT_CHECK_APPLIED:
        return True
    if importlib.util.find_spec('onnxruntime') is None:
        return False
    from mmdeploy.backend.base import BACKEND_MANAGERS
    from mmdeploy.backend.onnxruntime.backend_manager import ONNXRuntimeManager
    manager = type('DFINEONNXRuntimeManager',
                   (_ORTShapeCheckManagerMixin, ONNXRuntimeManager), {})
    manager.__module__ = __name__
    BACKEND_MANAGERS.register('onnxruntime')(manager)
    _ORT_CHECK_APPLIED = True
    return True
