# FP16 TensorRT engine with the layers known to break D-FINE / RT-DETR in
# FP16 kept in FP32 (LayerNorm after attention overflows; softmax of the
# attention weights and of the FDR corner distributions). The two
# `fp32_layer_*` keys are dfine_mmdet extensions, read by the TensorRT
# builder shim in dfine_mmdet/deploy/backends/tensorrt.py: the model config's
# custom_imports=['dfine_mmdet'] (or tools/deploy.py) installs it. Stock
# MMDeploy ignores them and would build everything in FP16.
backend_config = dict(
    type='tensorrt',
    common_config=dict(
        fp16_mode=True,
        max_workspace_size=1 << 30,
        fp32_layer_types=['NORMALIZATION', 'SOFTMAX'],
        fp32_layer_name_patterns=[]))
