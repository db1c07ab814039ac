"""Decoupled Distillation Focal (DDF) loss (D-FINE, arXiv 2410.13842, GO-LSD).

GO-LSD distils the refined edge distributions of the last decoder layer
(teacher, detached) into every earlier layer (student) with a temperature-
scaled KL divergence per edge::

    KL_e = T^2 * sum_bins softmax(t_e / T) * (log softmax(t_e / T)
                                            - log softmax(s_e / T))

Each edge is weighted by the IoU of the student's box with its GT when the
query is in the GO-LSD matched set, and by the teacher's confidence
``max_c sigmoid(teacher_logits)`` otherwise.  Matched and unmatched entries
are averaged separately and recombined with balance factors that depend on
how many there are ("decoupled")::

    DDF = (mean_matched(w * KL) * n_pos + mean_unmatched(w * KL) * n_neg)
          / (n_pos + n_neg),
    n_pos = sqrt(#matched edges * 8 / B)
    n_neg = sqrt(#unmatched edges * 8 / B)

(official constant: ``batch_scale = 8 / batch_size`` per GPU).  When the
student *is* the teacher (the last layer) the loss is exactly
``0 * sum(student)``.

mmdet's ``KnowledgeDistillationKLDivLoss`` is not reused: it averages the KL
over the bins (``mean(1)``) where D-FINE sums, and it has no decoupled
matched/unmatched reduction.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.losses.utils import weighted_loss
from mmdet.registry import MODELS
from torch import Tensor

from ..utils import Number


@weighted_loss
def distribution_distillation_kl(pred: Tensor,
                                 target: Tensor,
                                 temperature: float = 5.0) -> Tensor:
    """Temperature-scaled KL(teacher || student) per distribution.

    Args:
        pred (Tensor): Student logits (N, reg_max + 1).
        target (Tensor): Teacher logits (N, reg_max + 1) (detached here).
        temperature (float): Softmax temperature ``T``. Default 5.

    Returns:
        Tensor: ``T^2 * KL`` of shape (N,).
    """
    if pred.shape != target.shape:
        raise ValueError(f'distribution_distillation_kl: student '
                         f'{tuple(pred.shape)} and teacher '
                         f'{tuple(target.shape)} differ')
    kl = F.kl_div(
        F.log_softmax(pred / temperature, dim=1),
        F.softmax(target.detach() / temperature, dim=1),
        reduction='none').sum(-1)
    return (temperature**2) * kl


def ddf_balance_factors(pos_mask: Tensor,
                        batch_size: int,
                        ref_batch_size: int = 8) -> Tuple[Tensor, Tensor]:
    """DDF balance factors ``sqrt(count * ref_batch_size / batch_size)``.

    Args:
        pos_mask (Tensor): Bool (N,), True for entries (edges) of matched
            queries.
        batch_size (int): Images in the (per-GPU) batch.
        ref_batch_size (int): Official constant 8.

    Returns:
        tuple[Tensor, Tensor]: ``(num_pos, num_neg)`` float scalars.
    """
    batch_scale = ref_batch_size / batch_size
    return ((pos_mask.sum() * batch_scale)**0.5,
            ((~pos_mask).sum() * batch_scale)**0.5)


@MODELS.register_module()
class DecoupledDistillationFocalLoss(nn.Module):
    """DDF loss module (``loss_ddf``).

    Args:
        temperature (float): Distillation temperature ``T``. Default 5.
        loss_weight (float): Multiplier. Default 1 (D-FINE uses 1.5).
    """

    def __init__(self,
                 temperature: float = 5.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.loss_weight = loss_weight

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Tensor,
                pos_mask: Tensor,
                num_pos: Optional[Number] = None,
                num_neg: Optional[Number] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Student edge logits (N, reg_max + 1), all queries
                and edges of a layer (row ``4q + e``).
            target (Tensor): Teacher edge logits (N, reg_max + 1).
            weight (Tensor): (N,) per-edge weights (IoU for matched, teacher
                confidence for unmatched queries); detached here.
            pos_mask (Tensor): Bool (N,), True for matched entries.
            num_pos, num_neg (float | Tensor, optional): Balance factors.
                The D-FINE head (:class:`GOLSDLossMixin`) passes
                ``ddf_balance_factors`` of the GO-LSD matched set (also to the
                denoising layers, as the official code does); if omitted, the
                square roots of the matched / unmatched entry counts of
                ``pos_mask``.

        Returns:
            Tensor: Scalar loss.
        """
        if torch.equal(pred, target):
            return pred.sum() * 0 * self.loss_weight
        if num_pos is None or num_neg is None:
            num_pos, num_neg = ddf_balance_factors(pos_mask, 1, 1)
        loss = distribution_distillation_kl(
            pred,
            target,
            weight.detach(),
            reduction='none',
            temperature=self.temperature)
        loss_pos = loss[pos_mask].mean() if pos_mask.any() else 0
        loss_neg = loss[~pos_mask].mean() if (~pos_mask).any() else 0
        loss = (loss_pos * num_pos + loss_neg * num_neg) / (num_pos + num_neg)
        return self.loss_weight * loss
