from . import transforms
from .checked_coco import CheckedCocoDataset
