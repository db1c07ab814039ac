# Each module here registers itself on import; add one import line per module.
from .dfine_optim_constructor import DFINEOptimWrapperConstructor  # noqa: F401
