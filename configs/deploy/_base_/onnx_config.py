# ONNX export settings shared by every D-FINE deploy config.
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
