# Each module here registers itself on import; add one import line per module.
from .hybrid_encoder import HybridEncoder
