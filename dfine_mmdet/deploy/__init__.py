# Each module here registers itself on import; add one import line per module.
"""MMDeploy support of dfine_mmdet (imported by ``dfine_mmdet`` when
``mmdeploy`` is importable).

* :mod:`.symbolics`: ``F.grid_sample`` -> ONNX ``GridSample`` and native
  ``LayerNormalization`` for the onnxruntime / tensorrt backends;
* :mod:`.dfine_detector`, :mod:`.dfine_head`: end-to-end export of
  ``DFINE`` to ``dets [B, K, 5]`` / ``labels [B, K]``;
* :mod:`.deform_attn_sampler`: ``deform_attn_sampler='gather'`` in a deploy
  config (``configs/deploy/*_gather.py``) exports deformable attention
  without ``GridSample``;
* :mod:`.export_shims`: ``torch.onnx.export(dynamo=False)`` inside
  MMDeploy's rewriter context (torch >= 2.9);
* :mod:`.backends.tensorrt`: the TensorRT >= 10 wrapper / fp32-layer builder
  (only when ``tensorrt`` is importable);
* :mod:`.backends.onnxruntime`, :mod:`.backends.openvino`: wrappers that
  check the input shape against the graph first
  (:mod:`.input_shape_check`: a clear error naming the deploy config).
"""
from . import (deform_attn_sampler, dfine_detector, dfine_head, fdr_detrs,
               symbolics)

# The backend shims and the torch.onnx.export rewriter replace MMDeploy
# entries: dfine_mmdet.registration.register_all() applies them (the one list
# of what importing the plugin changes elsewhere).
