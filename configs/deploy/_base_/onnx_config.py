# ONNX export settings shared by every D-FINE deploy config.
# Loading any deploy config imports dfine_mmdet, so its MMDeploy rewriters and
# TensorRT shims are registered in every process that reads the config. That
# includes MMDeploy's own tools/deploy.py, whose to_backend step may run in a
# separate process that never reads the model config.
custom_imports = dict(imports=['dfine_mmdet'], allow_failed_imports=False)

# opset 17: GridSample (deformable attention) needs >= 16, and 17 exports
# LayerNorm as a native LayerNormalization op (one TensorRT
# INormalizationLayer, which the fp16 configs keep in fp32).
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=17,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['dets', 'labels'],
    input_shape=None,
    optimize=False)
