_base_ = ['./_base_/base_static.py', './_base_/backends/openvino.py']

backend_config = dict(
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 640, 640]))])
