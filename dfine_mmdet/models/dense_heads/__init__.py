# Each module here registers itself on import; add one import line per module.
from .deformable_detr_fdr_head import DeformableDETRFDRHead
from .dfine_head import DFINEHead
from .dino_fdr_head import DINOFDRHead
