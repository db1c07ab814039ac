# Each module here registers itself on import; add one import line per module.
from .deformable_detr_fdr import DeformableDETRFDR
from .dfine import DFINE
from .dino_fdr import DINOFDR, fill_fdr_settings
