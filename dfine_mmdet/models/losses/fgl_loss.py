"""Fine-Grained Localization (FGL) loss (D-FINE, arXiv 2410.13842, FDR).

Each box edge is predicted as a distribution over the ``reg_max + 1`` bins of
the non-uniform weighting function ``W(n)``.  The continuous target distance
``t`` of an edge lies between two neighbouring bins ``W_i <= t < W_{i+1}``;
FGL is a cross-entropy on both bins, interpolated by the distance of ``t`` to
each (``w_L + w_R = 1``), and weighted by the IoU of the layer's predicted
box with its ground truth (detached, the same for the 4 edges)::

    FGL = sum_edges IoU * (w_L * CE(p, i) + w_R * CE(p, i + 1)) / N

The targets ``(i + frac, w_R, w_L)`` come from
:func:`dfine_mmdet.models.task_modules.coders.fdr_coder.bbox2distance`.

This is GFL's Distribution Focal Loss (mmdet ``distribution_focal_loss``)
with two differences that rule out reusing it: the interpolation weights are
computed on the non-uniform ``W(n)`` grid (DFL derives them from the
fractional part of the label on a uniform grid), and out-of-range targets
put all weight on one bin.
"""
from typing import Optional, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.losses.utils import weighted_loss
from mmdet.registry import MODELS
from torch import Tensor


@weighted_loss
def fine_grained_localization_loss(
        pred: Tensor, target: Tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Element-wise FGL (two-bin interpolated cross-entropy).

    Args:
        pred (Tensor): Edge-distribution logits (N, reg_max + 1), one row per
            edge.
        target (tuple[Tensor, Tensor, Tensor]): ``(position, weight_right,
            weight_left)``, each (N,): ``floor(position)`` is the left bin
            (``position`` is below ``reg_max``), the weights of the left and
            right bins.

    Returns:
        Tensor: Loss of shape (N,).
    """
    position, weight_right, weight_left = target
    if not (position.shape == weight_right.shape == weight_left.shape ==
            pred.shape[:1]):
        raise ValueError(
            f'fine_grained_localization_loss: pred {tuple(pred.shape)} needs '
            f'(N,) targets, got {tuple(position.shape)}, '
            f'{tuple(weight_right.shape)}, {tuple(weight_left.shape)}')
    left = position.long()
    right = left + 1
    return (F.cross_entropy(pred, left, reduction='none') * weight_left +
            F.cross_entropy(pred, right, reduction='none') * weight_right)


@MODELS.register_module()
class FineGrainedLocalizationLoss(nn.Module):
    """FGL loss module (``loss_fgl``).

    Args:
        reduction (str): ``'none' | 'mean' | 'sum'``. Default ``'mean'``.
        loss_weight (float): Multiplier. Default 1 (D-FINE uses 0.15).
    """

    def __init__(self,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self,
                pred: Tensor,
                target: Tuple[Tensor, Tensor, Tensor],
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Logits (N, reg_max + 1); for D-FINE the matched
                queries' corners reshaped so that row ``4k + e`` is edge
                ``e`` (l, t, r, b) of pair ``k``.
            target (tuple[Tensor, Tensor, Tensor]): See
                :func:`fine_grained_localization_loss`.
            weight (Tensor, optional): (N,) weights; D-FINE uses the IoU of
                each pair repeated over its 4 edges.
            avg_factor (float, optional): Normaliser (D-FINE: the number of
                GO-LSD matched pairs).
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: The weighted loss.
        """
        assert reduction_override in (None, 'none', 'mean', 'sum')
        reduction = reduction_override if reduction_override else \
            self.reduction
        if weight is not None:
            weight = weight.float()
        return self.loss_weight * fine_grained_localization_loss(
            pred, target, weight, reduction=reduction, avg_factor=avg_factor)
