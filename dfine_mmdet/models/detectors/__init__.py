# Each module here registers itself on import; add one import line per module.
from .dfine import DFINE  # noqa: F401
from .dino_fdr import DINOFDR, fill_fdr_settings  # noqa: F401
from .deformable_detr_fdr import DeformableDETRFDR  # noqa: F401
