_base_ = [
    './detection_onnxruntime_static-640x640.py', './_base_/gather_sampler.py'
]
