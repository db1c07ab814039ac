"""Loss terms of one supervised DETR output on its matched (query, GT) pairs.

A DETR-style head supervises every output (decoder layer, pre head, encoder
top-k, denoising layer) with the same terms; only the matches, the
normaliser and the FDR targets differ (that is the *supervision plan* of
:mod:`dfine_mmdet.models.dense_heads.supervision_plan`).  Each term is
computed here, once, for every head that mixes in
:class:`~dfine_mmdet.models.dense_heads.go_lsd_loss.GOLSDLossMixin`
(``DFINEHead``, ``DINOFDRHead``, ...):

==========================  ===============================================
:func:`classification_loss` IoU-aware (VFL, MAL: labels + IoU of the matched
                            pairs) or label-only (mmdet ``FocalLoss``) class
                            loss; key from the loss (:func:`loss_key`)
:func:`box_losses`          L1 (``loss_bbox``) and GIoU (``loss_giou``)
:func:`fgl_loss`            Fine-Grained Localization (``loss_fgl``)
:func:`ddf_loss`            Decoupled Distillation Focal (``loss_ddf``)
==========================  ===============================================

Shapes: ``logits`` ``[B, Q, C]``, ``boxes`` ``[B, Q, 4]`` normalised
``cxcywh``, ``corners`` ``[B, Q, 4 (reg_max + 1)]``; ``targets`` per image
``labels`` ``[n]`` int64 and ``boxes`` ``[n, 4]`` normalised ``cxcywh``;
``indices`` per image ``(query_idx, gt_idx)`` int64.

The arithmetic is that of the official D-FINE criterion (Peterande/D-FINE,
Apache-2.0), written with mmdet's ``L1Loss`` / ``GIoULoss`` /
``bbox_overlaps`` (exact here: mmdet's reduction adds ``float32 eps`` to the
average factor, a relative change below 1.2e-7, and ``bbox_overlaps`` floors
union/enclosing areas at 1e-6, which only matters when both boxes are below
1e-6 of the image area, where the official code yields NaN).  Boxes are
converted to ``xyxy`` with widths/heights clamped at 0, as upstream.
"""
from typing import Dict, Sequence, Tuple

import torch
from mmdet.models.losses import QualityFocalLoss
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor, nn

from ..utils import FGLTargets, MatchIndices, bbox_cxcywh_to_xyxy_clamped

#: Term names of class losses that do not state ``loss_name`` themselves.
_CLS_LOSS_KEYS = {
    'DFINEVarifocalLoss': 'loss_vfl',
    'MatchabilityAwareLoss': 'loss_mal',
}


def loss_key(loss_cls: nn.Module) -> str:
    """Key of a classification term: the loss module's ``loss_name``
    attribute, else by type (``DFINEVarifocalLoss`` -> ``loss_vfl``,
    ``MatchabilityAwareLoss`` -> ``loss_mal``), else ``loss_cls`` (mmdet's
    ``FocalLoss`` and other label-only losses)."""
    return getattr(loss_cls, 'loss_name',
                   _CLS_LOSS_KEYS.get(type(loss_cls).__name__, 'loss_cls'))


def is_iou_aware(loss_cls: nn.Module) -> bool:
    """Whether the class loss takes ``(labels, IoU)`` targets: its
    ``iou_aware`` attribute, else True for the types of
    :data:`_CLS_LOSS_KEYS` and mmdet's ``QualityFocalLoss``."""
    return bool(
        getattr(
            loss_cls, 'iou_aware',
            type(loss_cls).__name__ in _CLS_LOSS_KEYS
            or isinstance(loss_cls, QualityFocalLoss)))


def query_index(indices: Sequence[MatchIndices]) -> Tuple[Tensor, Tensor]:
    """``(batch_idx, query_idx)`` of all matched pairs (for ``[B, Q]``
    indexing), image-major."""
    batch_idx = torch.cat(
        [torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    return batch_idx, src_idx


def matched_targets(targets: Sequence[Dict[str, Tensor]],
                    indices: Sequence[MatchIndices], key: str) -> Tensor:
    """``targets[i][key][gt_idx]`` of all matched pairs, concatenated."""
    if len(targets) != len(indices):
        raise ValueError(f'{len(indices)} match lists for {len(targets)} '
                         'images')
    return torch.cat([t[key][gt] for t, (_, gt) in zip(targets, indices)],
                     dim=0)


def matched_ious(boxes: Tensor, targets: Sequence[Dict[str, Tensor]],
                 indices: Sequence[MatchIndices]) -> Tensor:
    """IoU of every matched (prediction, GT) pair, ``[n]``, detached."""
    return bbox_overlaps(
        bbox_cxcywh_to_xyxy_clamped(boxes[query_index(indices)]),
        bbox_cxcywh_to_xyxy_clamped(
            matched_targets(targets, indices, 'boxes')),
        mode='iou',
        is_aligned=True).detach()


def classification_loss(loss_cls: nn.Module, logits: Tensor, boxes: Tensor,
                        targets: Sequence[Dict[str, Tensor]],
                        indices: Sequence[MatchIndices],
                        avg_factor: float) -> Tuple[str, Tensor]:
    """Class term of one output.

    Unmatched queries get the background label ``C``.  An IoU-aware loss
    (:func:`is_iou_aware`: ``DFINEVarifocalLoss``, DEIM's
    ``MatchabilityAwareLoss``) is called as ``loss_cls(logits [B, Q, C],
    (labels [B, Q], ious [B, Q]), avg_factor=avg_factor)`` with the detached
    IoU of each matched pair (0 elsewhere); mmdet's ``QualityFocalLoss``
    with the same targets flattened, as mmdet's DETR heads call it
    (``loss_cls(logits [B Q, C], (labels [B Q], ious [B Q]),
    avg_factor=avg_factor)``); a label-only loss (mmdet's ``FocalLoss``) as
    ``loss_cls(logits [B Q, C], labels [B Q], avg_factor=avg_factor)``.

    Returns:
        tuple[str, Tensor]: :func:`loss_key` and the weighted scalar.
    """
    num_classes = logits.shape[-1]
    idx = query_index(indices)
    labels = torch.full(
        logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)
    labels[idx] = matched_targets(targets, indices, 'labels')
    if not is_iou_aware(loss_cls):
        return loss_key(loss_cls), loss_cls(
            logits.reshape(-1, num_classes),
            labels.reshape(-1),
            avg_factor=avg_factor)
    scores = torch.zeros(
        logits.shape[:2], dtype=logits.dtype, device=logits.device)
    scores[idx] = matched_ious(boxes, targets, indices).to(logits.dtype)
    if isinstance(loss_cls, QualityFocalLoss):
        return loss_key(loss_cls), loss_cls(
            logits.reshape(-1, num_classes),
            (labels.reshape(-1), scores.reshape(-1)),
            avg_factor=avg_factor)
    return loss_key(loss_cls), loss_cls(
        logits, (labels, scores), avg_factor=avg_factor)


def box_losses(loss_bbox: nn.Module, loss_iou: nn.Module, boxes: Tensor,
               targets: Sequence[Dict[str, Tensor]],
               indices: Sequence[MatchIndices],
               avg_factor: float) -> Dict[str, Tensor]:
    """``loss_bbox`` (L1 on normalised ``cxcywh``) and ``loss_giou`` (on
    clamped ``xyxy``) of the matched pairs."""
    src = boxes[query_index(indices)]
    tgt = matched_targets(targets, indices, 'boxes')
    return dict(
        loss_bbox=loss_bbox(src, tgt, avg_factor=avg_factor),
        loss_giou=loss_iou(
            bbox_cxcywh_to_xyxy_clamped(src),
            bbox_cxcywh_to_xyxy_clamped(tgt),
            avg_factor=avg_factor))


def fgl_loss(loss_fgl: nn.Module, corners: Tensor,
             indices: Sequence[MatchIndices], fgl_targets: FGLTargets,
             ious: Tensor, avg_factor: float) -> Tensor:
    """FGL of the matched pairs' edge distributions against the coder's bin
    targets, each edge weighted by its pair's IoU.

    Args:
        corners (Tensor): ``[B, Q, 4 (reg_max + 1)]``.
        indices (list[tuple[Tensor, Tensor]]): The matched pairs.
        fgl_targets (tuple[Tensor]): ``(position, weight_right,
            weight_left)``, each ``[4 n]`` (``FDRBBoxCoder.encode`` of the
            same pairs, in the same order).
        ious (Tensor): ``[n]`` :func:`matched_ious` of the pairs.
    """
    bins = corners.shape[-1] // 4
    return loss_fgl(
        corners[query_index(indices)].reshape(-1, bins),
        fgl_targets,
        ious.repeat_interleave(4),
        avg_factor=avg_factor)


def ddf_loss(loss_ddf: nn.Module, corners: Tensor, teacher_corners: Tensor,
             teacher_logits: Tensor, indices: Sequence[MatchIndices],
             ious: Tensor, balance: Tuple[Tensor, Tensor]) -> Tensor:
    """DDF from the teacher's edge distributions to this output's, over all
    queries: matched edges weighted by their IoU, the others by the teacher's
    confidence ``max_c sigmoid(teacher_logits)``; matched / unmatched means
    recombined with the ``balance`` factors (``ddf_balance_factors``).

    Args:
        corners, teacher_corners (Tensor): ``[B, Q, 4 (reg_max + 1)]``.
        teacher_logits (Tensor): ``[B, Q, C]``.
        indices (list[tuple[Tensor, Tensor]]): The matched pairs.
        ious (Tensor): ``[n]`` :func:`matched_ious` of the pairs.
        balance (tuple[Tensor]): ``(num_pos, num_neg)``.
    """
    bins = corners.shape[-1] // 4
    idx = query_index(indices)
    confidence = teacher_logits.detach().sigmoid().max(-1)[0]
    weight = confidence.index_put(idx, ious.to(confidence.dtype))
    pos_mask = torch.zeros_like(confidence, dtype=torch.bool)
    pos_mask[idx] = True
    return loss_ddf(
        corners.reshape(-1, bins), teacher_corners.reshape(-1, bins),
        weight.repeat_interleave(4, dim=-1).reshape(-1),
        pos_mask.repeat_interleave(4, dim=-1).reshape(-1), *balance)
