# Each module here registers itself on import; add one import line per module.
from .fdr_coder import FDRBBoxCoder
