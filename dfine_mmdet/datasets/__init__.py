from . import transforms  # noqa: F401
from .checked_coco import CheckedCocoDataset  # noqa: F401
