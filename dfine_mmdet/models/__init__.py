from . import backbones, dense_heads, detectors, layers, losses, necks, task_modules  # noqa: F401
from . import data_preprocessors  # noqa: F401
