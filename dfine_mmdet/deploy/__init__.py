# Each module here registers itself on import; add one import line per module.
"""MMDeploy support of dfine_mmdet (imported by ``dfine_mmdet`` when
``mmdeploy`` is importable).

* :mod:`.symbolics`: ``F.grid_sample`` -> ONNX ``GridSample`` and native
  ``LayerNormalization`` for the onnxruntime / tensorrt backends;
* :mod:`.dfine_detector`, :mod:`.dfine_head`: end-to-end export of
  ``DFINE`` to ``dets [B, K, 5]`` / ``labels [B, K]``;
* :mod:`.export_shims`: ``torch.onnx.export(dynamo=False)`` inside
  MMDeploy's rewriter context (torch >= 2.9);
* :mod:`.backends.tensorrt`: the TensorRT >= 10 wrapper / fp32-layer builder
  (only when ``tensorrt`` is importable);
* :mod:`.backends.onnxruntime`, :mod:`.backends.openvino`: wrappers that
  check the input shape against the graph first
  (:mod:`.input_shape_check`: a clear error naming the deploy config).
"""
from . import dfine_detector  # noqa: F401
from . import dfine_head  # noqa: F401
from . import fdr_detrs  # noqa: F401
from . import symbolics  # noqa: F401
from .backends import (apply_mmdeploy_openvino_shim,
                       apply_mmdeploy_ort_shape_check)
from .backends.tensorrt import apply_mmdeploy_tensorrt_shim
from .export_shims import register_onnx_export_shim

register_onnx_export_shim()
apply_mmdeploy_tensorrt_shim()
apply_mmdeploy_openvino_shim()
apply_mmdeploy_ort_shape_check()
