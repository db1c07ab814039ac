"""Matchability-Aware Loss of DEIM (classification term ``loss_mal``).

DEIM (Huang et al., "DEIM: DETR with Improved Matching for Fast
Convergence", CVPR 2025, https://github.com/ShihuaHuang95/DEIM, Apache-2.0)
replaces D-FINE's varifocal loss by MAL (``loss_labels_mal`` in its
``engine/deim/deim_criterion.py``).  For a query matched to a ground truth of
class ``c`` with (detached) IoU ``q``, the target of logit ``c`` is
``q ** gamma``; every other target is 0.  Positives get weight 1 (VFL weights
them by ``q``, so low-IoU matches - frequent with Dense O2O's extra targets -
are not silenced), negatives the focal weight ::

    target = onehot * iou ** gamma
    weight = alpha * sigmoid(x).detach() ** gamma * (1 - onehot) + onehot
    loss   = BCEWithLogits(x, target) * weight          (gamma 1.5)

summed over all queries and classes and divided by the number of GT boxes.
DEIM's default ``mal_alpha=None`` means ``alpha = 1`` (its configs keep the
default; ``alpha`` here is that ``mal_alpha``).  The same ``gamma`` is the
exponent of the target and of the negatives' focal weight, as in DEIM.

The module takes the same inputs as
:class:`~dfine_mmdet.models.losses.DFINEVarifocalLoss` (logits, matched
labels, matched IoUs, normaliser) and does no matching.
"""
from typing import Optional, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.losses.utils import weighted_loss
from mmdet.registry import MODELS
from torch import Tensor


@weighted_loss
def matchability_aware_loss(pred: Tensor,
                            target: Tuple[Tensor, Tensor],
                            alpha: float = 1.0,
                            gamma: float = 1.5) -> Tensor:
    """Element-wise MAL.

    Args:
        pred (Tensor): Class logits (..., C).
        target (tuple[Tensor, Tensor]): ``(labels, ious)``: ``labels``
            (...,) int64 in ``[0, C]`` where ``C`` means background;
            ``ious`` (...,) IoU of the matched pair in [0, 1] (ignored for
            background; no gradient flows into it).
        alpha (float): Weight of the negatives (DEIM's ``mal_alpha``;
            ``None`` there equals 1). Default 1.
        gamma (float): Exponent of the IoU target and focusing exponent of
            the negatives. Default 1.5.

    Returns:
        Tensor: Loss of shape (..., C).
    """
    labels, ious = target
    num_classes = pred.shape[-1]
    if labels.shape != pred.shape[:-1] or ious.shape != labels.shape:
        raise ValueError(
            f'matchability_aware_loss: pred {tuple(pred.shape)} needs labels '
            f'and ious of shape {tuple(pred.shape[:-1])}, got '
            f'{tuple(labels.shape)} and {tuple(ious.shape)}')
    if labels.numel() and (labels.min() < 0 or labels.max() > num_classes):
        raise ValueError(
            f'matchability_aware_loss: labels must lie in [0, {num_classes}]'
            f' ({num_classes} = background), got [{int(labels.min())}, '
            f'{int(labels.max())}]')
    onehot = F.one_hot(labels, num_classes=num_classes + 1)[..., :-1]
    target_score = (ious.detach().to(pred.dtype).unsqueeze(-1) *
                    onehot).pow(gamma)
    pred_score = pred.sigmoid().detach()
    weight = alpha * pred_score.pow(gamma) * (1 - onehot) + onehot
    return F.binary_cross_entropy_with_logits(
        pred, target_score, weight=weight, reduction='none')


@MODELS.register_module()
class MatchabilityAwareLoss(nn.Module):
    """DEIM's Matchability-Aware Loss (``loss_mal``).

    Use it as the D-FINE head's classification loss::

        bbox_head=dict(loss_cls=dict(
            type='MatchabilityAwareLoss', gamma=1.5, loss_weight=1.0))

    Args:
        alpha (float): Weight of the negatives (DEIM ``mal_alpha``; its
            default ``None`` is 1). Default 1.
        gamma (float): IoU-target exponent and focusing exponent. DEIM's
            configs use 1.5. Default 1.5.
        reduction (str): ``'none' | 'mean' | 'sum'``. Default ``'mean'``.
        loss_weight (float): Multiplier of the loss. Default 1.
    """

    #: key of this term in the loss dict (``loss_mal_aux_0``, ...)
    loss_name = 'loss_mal'
    #: the head passes the IoU of each matched pair (IoU-aware target)
    iou_aware = True
    #: sigmoid class scores (read by mmdet's ``DETRHead``)
    use_sigmoid = True

    def __init__(self,
                 alpha: float = 1.0,
                 gamma: float = 1.5,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if gamma <= 0:
            raise ValueError(
                f'MatchabilityAwareLoss: gamma must be > 0, got {gamma}')
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self,
                pred: Tensor,
                target: Tuple[Tensor, Tensor],
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Class logits (..., C).
            target (tuple[Tensor, Tensor]): ``(labels, ious)`` (...,) each,
                see :func:`matchability_aware_loss`.
            weight (Tensor, optional): Element-wise weight (..., C).
            avg_factor (float, optional): Normaliser; DEIM uses the number of
                GT boxes (the loss is ``sum / num_boxes``).
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: The weighted loss.
        """
        assert reduction_override in (None, 'none', 'mean', 'sum')
        reduction = reduction_override if reduction_override else \
            self.reduction
        return self.loss_weight * matchability_aware_loss(
            pred,
            target,
            weight,
            alpha=self.alpha,
            gamma=self.gamma,
            reduction=reduction,
            avg_factor=avg_factor)
