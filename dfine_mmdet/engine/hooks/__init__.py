# Each module here registers itself on import; add one import line per module.
from .dfine_stop_aug_hook import DFINEStopAugHook  # noqa: F401
from .class_head_adapt_hook import ClassHeadAdaptHook  # noqa: F401
from .non_finite_loss_hook import NonFiniteLossHook  # noqa: F401
from .data_skip_report_hook import DataSkipReportHook  # noqa: F401
from .rng_state_hook import RNGStateHook  # noqa: F401
from .atomic_checkpoint_hook import AtomicCheckpointHook  # noqa: F401
from .wall_clock_budget_hook import WallClockBudgetHook  # noqa: F401
from .dense_o2o_policy_hook import DenseO2OPolicyHook  # noqa: F401
