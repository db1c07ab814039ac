# Helpers shared by several D-FINE modules (no registered types here).
from .box_ops import bbox_cxcywh_to_xyxy_clamped
from .mlp import ACTIVATIONS, MLP, activation_layer
from .typing import FGLTargets, MatchIndices, Number, SpatialShapes
