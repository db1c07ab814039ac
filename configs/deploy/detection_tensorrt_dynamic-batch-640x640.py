_base_ = ['./_base_/base_dynamic_batch.py', './_base_/backends/tensorrt.py']

# batch 1..8, tuned for batch 4; edit opt/max_shape for your serving batch.
backend_config = dict(model_inputs=[
    dict(
        input_shapes=dict(
            input=dict(
                min_shape=[1, 3, 640, 640],
                opt_shape=[4, 3, 640, 640],
                max_shape=[8, 3, 640, 640])))
])
