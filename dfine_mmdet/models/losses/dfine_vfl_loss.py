"""Varifocal loss as D-FINE computes it (classification term ``loss_vfl``).

D-FINE (arXiv 2410.13842) inherits RT-DETR's IoU-aware classification loss:
for a query matched to a ground truth of class ``c`` the target of logit
``c`` is the IoU between the predicted and the GT box (detached), every
other target is 0, and ::

    weight = alpha * sigmoid(x).detach() ** gamma * (1 - onehot) + target
    loss   = BCEWithLogits(x, target) * weight          (alpha 0.75, gamma 2)

summed over all queries and classes and divided by the number of GT boxes.

Written here rather than reusing mmdet's ``VarifocalLoss`` because the two
differ: mmdet weights a positive entry whose IoU is 0 like a negative
(``alpha * |p - t|^gamma``) while D-FINE gives it weight 0, and mmdet does
not detach the focal weight (different gradients).
"""
from typing import Optional, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.losses.utils import weighted_loss
from mmdet.registry import MODELS
from torch import Tensor


@weighted_loss
def dfine_varifocal_loss(pred: Tensor,
                         target: Tuple[Tensor, Tensor],
                         alpha: float = 0.75,
                         gamma: float = 2.0) -> Tensor:
    """Element-wise D-FINE varifocal loss.

    Args:
        pred (Tensor): Class logits (..., C).
        target (tuple[Tensor, Tensor]): ``(labels, scores)``: ``labels``
            (...,) int64 in ``[0, C]`` where ``C`` means background;
            ``scores`` (...,) the IoU-aware target of the labelled class
            (ignored for background).
        alpha (float): Weight of the negatives. Default 0.75.
        gamma (float): Focusing exponent of the negatives. Default 2.

    Returns:
        Tensor: Loss of shape (..., C).
    """
    labels, scores = target
    num_classes = pred.shape[-1]
    if labels.shape != pred.shape[:-1] or scores.shape != labels.shape:
        raise ValueError(
            f'dfine_varifocal_loss: pred {tuple(pred.shape)} needs labels and '
            f'scores of shape {tuple(pred.shape[:-1])}, got '
            f'{tuple(labels.shape)} and {tuple(scores.shape)}')
    onehot = F.one_hot(labels, num_classes=num_classes + 1)[..., :-1]
    target_score = scores.to(pred.dtype).unsqueeze(-1) * onehot
    pred_score = pred.sigmoid().detach()
    weight = alpha * pred_score.pow(gamma) * (1 - onehot) + target_score
    return F.binary_cross_entropy_with_logits(
        pred, target_score, weight=weight, reduction='none')


@MODELS.register_module()
class DFINEVarifocalLoss(nn.Module):
    """D-FINE varifocal loss module (``loss_vfl``).

    Args:
        alpha (float): Weight of the negatives. Default 0.75.
        gamma (float): Focusing exponent. Default 2.
        reduction (str): ``'none' | 'mean' | 'sum'``. Default ``'mean'``.
        loss_weight (float): Multiplier of the loss. Default 1.

    Class attributes read by the D-FINE heads (an IoU-aware class loss such
    as DEIM's ``MatchabilityAwareLoss`` states the same three):
    ``loss_name`` (the term key), ``iou_aware`` (called with ``(labels,
    ious)`` targets, see ``classification_loss`` in
    :mod:`dfine_mmdet.models.losses.set_prediction_losses`) and
    ``use_sigmoid`` (sigmoid scores, read by mmdet's DETR heads).
    """

    loss_name = 'loss_vfl'
    iou_aware = True
    use_sigmoid = True

    def __init__(self,
                 alpha: float = 0.75,
                 gamma: float = 2.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
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
            target (tuple[Tensor, Tensor]): ``(labels, scores)``, see
                :func:`dfine_varifocal_loss`.
            weight (Tensor, optional): Element-wise weight (..., C).
            avg_factor (float, optional): Normaliser; D-FINE uses the number
                of GT boxes (so the loss is ``sum / num_boxes``).
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: The weighted loss.
        """
        assert reduction_override in (None, 'none', 'mean', 'sum')
        reduction = reduction_override if reduction_override else \
            self.reduction
        return self.loss_weight * dfine_varifocal_loss(
            pred,
            target,
            weight,
            alpha=self.alpha,
            gamma=self.gamma,
            reduction=reduction,
            avg_factor=avg_factor)
