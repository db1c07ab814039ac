from . import backbones, dense_heads, detectors, layers, losses, necks, task_modules  # noqa: F401
