# OpenVINO (CPU) through MMDeploy, with dfine_mmdet's shim for openvino >= 2024
# (dfine_mmdet/deploy/backends/openvino.py): the ONNX file is converted with
# openvino.convert_model to an FP32 IR (end2end.xml / end2end.bin).
# compile_config: properties for openvino.Core.compile_model. f32 keeps the
# ONNX Runtime tolerances of --check; OpenVINO's CPU default on BF16-capable
# processors is bfloat16 (INFERENCE_PRECISION_HINT='bf16' opts in).
backend_config = dict(
    type='openvino',
    compile_config=dict(
        PERFORMANCE_HINT='LATENCY', INFERENCE_PRECISION_HINT='f32'))
