"""Backend shims for MMDeploy 1.3.1, one module per backend (each says which
versions it fixes and why). They are registered by
:mod:`dfine_mmdet.deploy`."""
from .onnxruntime import apply_mmdeploy_ort_shape_check
from .openvino import apply_mmdeploy_openvino_shim
