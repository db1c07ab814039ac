# Each module here registers itself on import; add one import line per module.
from .dfine_optim_constructor import DFINEOptimWrapperConstructor  # noqa: F401
from .non_finite_guard import (NonFiniteGuardAmpOptimWrapper,  # noqa: F401
                               NonFiniteGuardOptimWrapper)
