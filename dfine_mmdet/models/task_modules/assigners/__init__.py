# Each module here registers itself on import; add one import line per module.
from .dfine_hungarian_assigner import DFINEHungarianAssigner, bbox_cxcywh_to_xyxy_clamped  # noqa: F401
from .go_lsd_assigner import GOLSDAssigner  # noqa: F401
