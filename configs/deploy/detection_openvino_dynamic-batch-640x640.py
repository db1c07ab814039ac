_base_ = ['./_base_/base_dynamic_batch.py', './_base_/backends/openvino.py']

# -1: the batch axis stays dynamic in the IR
backend_config = dict(
    model_inputs=[dict(opt_shapes=dict(input=[-1, 3, 640, 640]))])
