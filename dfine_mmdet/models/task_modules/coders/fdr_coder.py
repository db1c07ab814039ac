"""Fine-grained Distribution Refinement (FDR) box coder.

D-FINE (arXiv 2410.13842, §3.2) predicts each box edge as a probability
distribution over ``reg_max + 1`` bins.  The bins are not uniform: the
weighting function ``W(n)`` (paper Eq. 4) is dense near zero (fine
adjustments) and sparse at the ends (coarse corrections).  An edge distance is
the expectation of ``W`` under the predicted distribution (paper Eq. 3), and a
box is decoded from a fixed reference box and the four edge distances
(paper Eq. 2)::

    x1 = cx - (c/2 + d_l) * w / c        x2 = cx + (c/2 + d_r) * w / c
    y1 = cy - (c/2 + d_t) * h / c        y2 = cy + (c/2 + d_b) * h / c

with ``c = |reg_scale|``.  ``bbox2distance`` inverts this and splits the
continuous target distance between its two neighbouring bins (the targets of
the FGL loss, paper Eq. 6).

This module is the single place where these formulas live; the decoder, the
head, the FGL loss and the deploy path all use it.  It is written for this
plugin (mmdet has no equivalent: ``DistancePointBBoxCoder`` uses uniform bins
and point anchors).  The arithmetic follows the official float32 tensor
recipe step by step so that results are bit-comparable with the official
``model.eval()`` outputs.

Shapes: ``reg_max`` = 32 gives 33 bins per edge and 132 corner logits per
query.  Boxes are normalised ``(cx, cy, w, h)`` unless stated otherwise; edge
order is always ``(left, top, right, bottom)``.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.task_modules.coders.base_bbox_coder import BaseBBoxCoder
from mmdet.registry import TASK_UTILS
from torch import Tensor

from ...utils import Number


def _as_tensor(value: Number, like: Tensor) -> Tensor:
    """Return ``value`` as a 1-element tensor on ``like``'s device.

    Integers keep an integer dtype: the official checkpoints store
    ``reg_scale`` as an int64 tensor and the float32 results depend on the
    int/float promotion rules, which we reproduce.
    """
    if isinstance(value, Tensor):
        return value.reshape(-1)[:1].to(like.device)
    return torch.tensor([value], device=like.device)


def weighting_function(reg_max: int, up: Tensor, reg_scale: Number) -> Tensor:
    """Non-uniform weighting function ``W(n)`` (paper Eq. 4).

    With ``a = |up|`` and ``c = |reg_scale|``::

        W = [-2ac, 1 - s^(reg_max/2 - 1), ..., 1 - s, 0,
             s - 1, ..., s^(reg_max/2 - 1) - 1, 2ac],
        s = (ac + 1)^(2/(reg_max-2))

    Args:
        reg_max (int): Number of bin intervals (32 in every official config).
        up (Tensor): Float tensor of shape (1,) holding ``a`` (0.5).
        reg_scale (int | float | Tensor): ``c`` (4, or 8 for D-FINE-X); an
            int64 tensor of shape (1,) in official checkpoints.

    Returns:
        Tensor: Bin values of shape (reg_max + 1,), dtype of ``up``.
    """
    if reg_max < 4 or reg_max % 2:
        raise ValueError(f'reg_max must be an even number >= 4, got {reg_max}')
    up = up.reshape(-1)
    scale = torch.abs(_as_tensor(reg_scale, up))
    a = torch.abs(up[0])
    ub1 = a * scale
    ub2 = a * scale * 2
    step = (ub1 + 1)**(2 / (reg_max - 2))
    half = reg_max // 2
    left = [-(step)**k + 1 for k in range(half - 1, 0, -1)]
    right = [(step)**k - 1 for k in range(1, half)]
    zero = torch.zeros_like(up[0][None])
    return torch.cat([-ub2] + left + [zero] + right + [ub2], 0)


def fdr_integral(corners: Tensor, project: Tensor) -> Tensor:
    """Expected edge distances from corner logits (paper Eq. 3).

    Args:
        corners (Tensor): Corner logits of shape (..., 4 * (reg_max + 1)),
            edge-major (all bins of the left edge first, then top, right,
            bottom).
        project (Tensor): ``W(n)`` of shape (reg_max + 1,).

    Returns:
        Tensor: Distances of shape (..., 4) in units of ``W``.
    """
    num_bins = project.numel()
    if corners.shape[-1] != 4 * num_bins:
        raise ValueError(f'corner logits have {corners.shape[-1]} channels, '
                         f'expected 4 * {num_bins} for reg_max={num_bins - 1}')
    lead = corners.shape[:-1]
    prob = F.softmax(corners.reshape(-1, num_bins), dim=1)
    dist = F.linear(prob, project.to(prob.dtype)).reshape(-1, 4)
    return dist.reshape(*lead, 4)


def distance2bbox(ref: Tensor, distance: Tensor, reg_scale: Number) -> Tensor:
    """Decode edge distances relative to reference boxes (paper Eq. 2).

    Args:
        ref (Tensor): Reference boxes (..., 4), normalised ``(cx, cy, w, h)``.
        distance (Tensor): Edge distances (..., 4) ``(l, t, r, b)``.
        reg_scale (int | float | Tensor): ``c``.

    Returns:
        Tensor: Decoded boxes (..., 4), normalised ``(cx, cy, w, h)``; not
        clamped.
    """
    c = torch.abs(_as_tensor(reg_scale, ref)) if isinstance(
        reg_scale, Tensor) else abs(reg_scale)
    cx, cy, w, h = ref.unbind(-1)
    x1 = cx - (0.5 * c + distance[..., 0]) * (w / c)
    y1 = cy - (0.5 * c + distance[..., 1]) * (h / c)
    x2 = cx + (0.5 * c + distance[..., 2]) * (w / c)
    y2 = cy + (0.5 * c + distance[..., 3]) * (h / c)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def translate_gt(target: Tensor, reg_max: int, reg_scale: Number,
                 up: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Split continuous edge distances between their two neighbouring bins.

    For a distance ``t`` with ``W_i <= t < W_{i+1}`` the left bin ``i`` gets
    weight ``w_L = 1 - w_R`` and the right bin ``w_R = |t - W_i| /
    (|t - W_i| + |W_{i+1} - t|)``.  Distances below ``W_0`` go fully to bin 0;
    distances at or beyond ``W_reg_max`` go fully to the right bin of the
    position ``reg_max - 0.1`` (i.e. bin ``reg_max``).

    Args:
        target (Tensor): Distances of any shape (flattened to (N,)).
        reg_max, reg_scale, up: As in :func:`weighting_function`.

    Returns:
        tuple[Tensor]: ``(position, weight_right, weight_left)``, each (N,);
        ``position`` is a float whose floor is the left bin index.
    """
    target = target.reshape(-1)
    values = weighting_function(reg_max, up, reg_scale)
    left_idx = (values.unsqueeze(0) - target.unsqueeze(1) <= 0).sum(1) - 1
    position = left_idx.float()
    weight_right = torch.zeros_like(position)
    weight_left = torch.zeros_like(position)

    inside = (position >= 0) & (position < reg_max)
    idx = position[inside].long()
    d_left = torch.abs(target[inside] - values[idx])
    d_right = torch.abs(values[idx + 1] - target[inside])
    weight_right[inside] = d_left / (d_left + d_right)
    weight_left[inside] = 1.0 - weight_right[inside]

    below = position < 0
    weight_right[below] = 0.0
    weight_left[below] = 1.0
    position[below] = 0.0

    above = position >= reg_max
    weight_right[above] = 1.0
    weight_left[above] = 0.0
    position[above] = reg_max - 0.1
    return position, weight_right, weight_left


def bbox2distance(ref: Tensor,
                  gt_xyxy: Tensor,
                  reg_max: int,
                  reg_scale: Number,
                  up: Tensor,
                  eps: float = 0.1) -> Tuple[Tensor, Tensor, Tensor]:
    """FGL targets: inverse of :func:`distance2bbox` mapped onto the bins.

    Args:
        ref (Tensor): Reference boxes (n, 4), normalised ``(cx, cy, w, h)``.
        gt_xyxy (Tensor): Matched ground-truth boxes (n, 4), normalised
            ``(x1, y1, x2, y2)``.
        reg_max, reg_scale, up: As in :func:`weighting_function`.
        eps (float): Keeps the target position strictly below ``reg_max``.

    Returns:
        tuple[Tensor]: ``(position, weight_right, weight_left)``, each of
        shape (4n,), ordered pair-major then edge ``l, t, r, b``; detached.
    """
    c = torch.abs(_as_tensor(reg_scale, ref)) if isinstance(
        reg_scale, Tensor) else abs(reg_scale)
    sx = ref[:, 2] / c + 1e-16
    sy = ref[:, 3] / c + 1e-16
    left = (ref[:, 0] - gt_xyxy[:, 0]) / sx - 0.5 * c
    top = (ref[:, 1] - gt_xyxy[:, 1]) / sy - 0.5 * c
    right = (gt_xyxy[:, 2] - ref[:, 0]) / sx - 0.5 * c
    bottom = (gt_xyxy[:, 3] - ref[:, 1]) / sy - 0.5 * c
    dist = torch.stack([left, top, right, bottom], -1)
    position, weight_right, weight_left = translate_gt(dist, reg_max,
                                                       reg_scale, up)
    position = position.clamp(min=0, max=reg_max - eps)
    return (position.reshape(-1).detach(), weight_right.detach(),
            weight_left.detach())


@TASK_UTILS.register_module()
class FDRBBoxCoder(BaseBBoxCoder):
    """Box coder of Fine-grained Distribution Refinement (paper §3.2).

    ``decode`` turns corner logits into boxes (Eq. 2-3); ``encode`` turns
    ground-truth boxes into FGL bin targets (Eq. 6).

    This object is the one source of ``reg_max`` / ``reg_scale`` / ``up``
    (and these class defaults the only defaults): a head builds it from its
    ``bbox_coder`` config and hands it to its decoder and LQE; the loss reads
    it (``encode``).  The D-FINE decoder keeps ``up`` / ``reg_scale`` as
    buffers for the checkpoint (official state dicts hold them) and writes a
    loaded checkpoint's values back into this object.

    Args:
        reg_max (int): Number of bin intervals per edge. Default 32.
        reg_scale (float): ``c`` of ``W(n)``. Default 4 (8 for D-FINE-X).
        up (float): ``a`` of ``W(n)``. Default 0.5.
    """

    def __init__(self,
                 reg_max: int = 32,
                 reg_scale: float = 4.0,
                 up: float = 0.5,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.reg_max = reg_max
        self.reg_scale = reg_scale
        self.up = up

    def project(self,
                up: Optional[Tensor] = None,
                reg_scale: Optional[Number] = None,
                device: Optional[torch.device] = None) -> Tensor:
        """``W(n)`` of shape (reg_max + 1,)."""
        if up is None:
            up = torch.tensor([self.up], device=device)
        return weighting_function(
            self.reg_max, up,
            self.reg_scale if reg_scale is None else reg_scale)

    def encode(
            self,
            ref: Tensor,
            gt_xyxy: Tensor,
            up: Optional[Tensor] = None,
            reg_scale: Optional[Number] = None
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """See :func:`bbox2distance`."""
        if up is None:
            up = torch.tensor([self.up], device=ref.device)
        return bbox2distance(
            ref, gt_xyxy, self.reg_max,
            self.reg_scale if reg_scale is None else reg_scale, up)

    def decode(self,
               ref: Tensor,
               corners: Tensor,
               up: Optional[Tensor] = None,
               reg_scale: Optional[Number] = None,
               project: Optional[Tensor] = None) -> Tensor:
        """Corner logits (..., 4*(reg_max+1)) -> boxes (..., 4) cxcywh.

        ``project`` (``W(n)``, (reg_max + 1,)) may be passed when it was
        computed once for several decodes (the decoder loop); otherwise it is
        computed from ``up`` / ``reg_scale``.
        """
        reg_scale = self.reg_scale if reg_scale is None else reg_scale
        if project is None:
            project = self.project(up, reg_scale, device=corners.device)
        return distance2bbox(ref, fdr_integral(corners, project), reg_scale)
