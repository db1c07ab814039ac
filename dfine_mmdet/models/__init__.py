from . import (backbones, data_preprocessors, dense_heads, detectors, layers,
               losses, necks, task_modules)
