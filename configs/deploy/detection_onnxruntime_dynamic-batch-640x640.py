_base_ = ['./_base_/base_dynamic_batch.py', './_base_/backends/onnxruntime.py']
