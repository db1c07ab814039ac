# Each module here registers itself on import; add one import line per module.
from .photometric_distort import RandomPhotometricDistort  # noqa: F401
from .iou_crop import RandomIoUCrop  # noqa: F401
from .sanitize_boxes import SanitizeBoundingBoxes  # noqa: F401
from .checked_load_image import CheckedLoadImageFromFile  # noqa: F401
from .deim_mosaic import DEIMMosaic, SkipAfterMosaic  # noqa: F401
