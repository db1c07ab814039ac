# Each module here registers itself on import; add one import line per module.
from .checked_load_image import CheckedLoadImageFromFile
from .deim_mosaic import DEIMMosaic, SkipAfterMosaic
from .iou_crop import RandomIoUCrop
from .photometric_distort import RandomPhotometricDistort
from .sanitize_boxes import SanitizeBoundingBoxes
