# Each module here registers itself on import; add one import line per module.
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .class_head_adapt_hook import ClassHeadAdaptHook
from .data_skip_report_hook import DataSkipReportHook
from .dense_o2o_policy_hook import DenseO2OPolicyHook
from .dfine_stop_aug_hook import DFINEStopAugHook
from .non_finite_loss_hook import NonFiniteLossHook
from .rng_state_hook import RNGStateHook
from .wall_clock_budget_hook import WallClockBudgetHook
