# Each module here registers itself on import; add one import line per module.
from .dfine_optim_constructor import DFINEOptimWrapperConstructor
from .non_finite_guard import (NonFiniteGuardAmpOptimWrapper,
                               NonFiniteGuardOptimWrapper)
