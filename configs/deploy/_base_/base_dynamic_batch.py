# Dynamic batch at a fixed 640x640 input. D-FINE's anchors and encoder
# positional embedding are tied to the 640 training resolution, so only the
# batch axis is dynamic.
_base_ = ['./base_static.py']

onnx_config = dict(
    dynamic_axes=dict(
        input=dict({0: 'batch'}),
        dets=dict({0: 'batch'}),
        labels=dict({0: 'batch'})))
