"""Type aliases used across the D-FINE modules (defined once here)."""
from typing import Sequence, Tuple, Union

from torch import Tensor

#: Matching result of one image: (query indices, gt indices), int64, equal
#: length, query indices ascending (scipy's row order).
MatchIndices = Tuple[Tensor, Tensor]

#: FGL bin targets of matched edges: (position, weight_right, weight_left),
#: each of shape (4 * num_pairs,).
FGLTargets = Tuple[Tensor, Tensor, Tensor]

#: A scalar hyper-parameter that may be a Python number or a 1-element tensor
#: (e.g. the ``reg_scale`` / ``up`` buffers of the FDR decoder).
Number = Union[int, float, Tensor]

#: ``[(H_l, W_l)]`` of every feature level, high resolution first.
SpatialShapes = Sequence[Tuple[int, int]]
