# Each module here registers itself on import; add one import line per module.
from .batch_multiscale_resize import DFINEBatchMultiScaleResize  # noqa: F401
from .batch_mixup import DEIMBatchMixUp  # noqa: F401
