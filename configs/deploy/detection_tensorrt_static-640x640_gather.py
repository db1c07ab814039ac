_base_ = [
    './detection_tensorrt_static-640x640.py', './_base_/gather_sampler.py'
]
