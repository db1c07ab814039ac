# Each module here registers itself on import; add one import line per module.
from .hgnetv2 import HGNetV2
