_base_ = ['./_base_/base_static.py', './_base_/backends/tensorrt.py']

backend_config = dict(model_inputs=[
    dict(
        input_shapes=dict(
            input=dict(
                min_shape=[1, 3, 640, 640],
                opt_shape=[1, 3, 640, 640],
                max_shape=[1, 3, 640, 640])))
])
