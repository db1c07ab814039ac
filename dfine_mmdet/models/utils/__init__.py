# Helpers shared by several D-FINE modules (no registered types here).
from .box_ops import bbox_cxcywh_to_xyxy_clamped  # noqa: F401
from .typing import FGLTargets, MatchIndices, Number, SpatialShapes  # noqa: F401
from .mlp import ACTIVATIONS, MLP, activation_layer  # noqa: F401
