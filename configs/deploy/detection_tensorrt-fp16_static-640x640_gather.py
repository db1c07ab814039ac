_base_ = [
    './detection_tensorrt-fp16_static-640x640.py', './_base_/gather_sampler.py'
]
