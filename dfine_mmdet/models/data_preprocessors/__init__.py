# Each module here registers itself on import; add one import line per module.
from .batch_mixup import DEIMBatchMixUp
from .batch_multiscale_resize import DFINEBatchMultiScaleResize
