# Each module here registers itself on import; add one import line per module.
from .dfine_head import DFINEHead  # noqa: F401
from .dino_fdr_head import DINOFDRHead  # noqa: F401
from .deformable_detr_fdr_head import DeformableDETRFDRHead  # noqa: F401
