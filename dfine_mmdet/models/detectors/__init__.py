# Each module here registers itself on import; add one import line per module.
from .dfine import DFINE  # noqa: F401
