_base_ = [
    './detection_onnxruntime_dynamic-batch-640x640.py',
    './_base_/gather_sampler.py'
]
