# Each module here registers itself on import; add one import line per module.
from .dfine_hungarian_assigner import DFINEHungarianAssigner
from .go_lsd_assigner import GOLSDAssigner
