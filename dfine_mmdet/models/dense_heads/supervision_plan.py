"""Typed records of GO-LSD training: what a head hands to the loss, and the
supervision plan the loss consumes.

A head passes its training outputs as records (no nested dicts):

* :class:`FDRPredictions`: the decoder layers, stacked ``[L, B, Q, *]``
  (logits, boxes, corner logits) with their fixed FDR reference ``[B, Q, 4]``;
* :class:`BoxPredictions`: an output without corners (the ``pre`` head, the
  encoder top-k), ``[B, Q, *]``.

:meth:`GOLSDLossMixin.supervision_plan
<dfine_mmdet.models.dense_heads.go_lsd_loss.GOLSDLossMixin.supervision_plan>`
matches them and returns a list of :class:`Supervision` entries, one per
supervised output, each saying *everything* that differs between outputs: the
key suffix, the output (:class:`SupervisedOutput`: predictions + its own
matches), the box matches, both normalisers, the FGL targets and the DDF
teacher.  :meth:`GOLSDLossMixin.go_lsd_loss` consumes the list in one loop.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from torch import Tensor

from ..utils import FGLTargets, MatchIndices


class FDRPredictions(NamedTuple):
    """Predictions of ``L`` decoder layers with FDR (one group of queries:
    the matching or the denoising part).

    Attributes:
        logits (Tensor): ``[L, B, Q, C]`` class logits.
        boxes (Tensor): ``[L, B, Q, 4]`` normalised ``cxcywh``.
        corners (Tensor): ``[L, B, Q, 4 (reg_max + 1)]`` accumulated corner
            logits.
        refs (Tensor): ``[B, Q, 4]`` the fixed FDR reference boxes every
            layer decodes around (FGL targets are encoded relative to them).
    """
    logits: Tensor
    boxes: Tensor
    corners: Tensor
    refs: Tensor


class BoxPredictions(NamedTuple):
    """Predictions of an output without corners (``pre`` head, encoder).

    Attributes:
        logits (Tensor): ``[B, Q, C]``.
        boxes (Tensor): ``[B, Q, 4]`` normalised ``cxcywh``.
    """
    logits: Tensor
    boxes: Tensor


class SupervisedOutput(NamedTuple):
    """One supervised output and its own one-to-one matches.

    Attributes:
        logits (Tensor): ``[B, Q, C]``.
        boxes (Tensor): ``[B, Q, 4]``.
        corners (Tensor | None): ``[B, Q, 4 (reg_max + 1)]``.
        refs (Tensor | None): ``[B, Q, 4]`` fixed FDR reference.
        indices (list[tuple[Tensor, Tensor]]): Per image ``(query_idx,
            gt_idx)``: the output's own Hungarian matches (denoising: the
            fixed denoising matches); they supervise the class term.
    """
    logits: Tensor
    boxes: Tensor
    corners: Optional[Tensor]
    refs: Optional[Tensor]
    indices: List[MatchIndices]


class DDFTeacher(NamedTuple):
    """What DDF distils from (the last layer of the same query group).

    Attributes:
        corners (Tensor): ``[B, Q, 4 (reg_max + 1)]`` teacher corners.
        logits (Tensor): ``[B, Q, C]`` teacher logits (confidence weights).
        balance (tuple[Tensor, Tensor]): ``(num_pos, num_neg)`` balance
            factors of the GO-LSD matched set.
    """
    corners: Tensor
    logits: Tensor
    balance: Tuple[Tensor, Tensor]


class Supervision(NamedTuple):
    """One entry of the supervision plan: one output and how it is
    supervised.

    Attributes:
        suffix (str): Appended to every term key (``''``, ``'_aux_0'``,
            ``'_pre'``, ``'_enc_0'``, ``'_dn_0'``, ``'_dn_pre'``).
        output (SupervisedOutput): Predictions and own matches.
        box_indices (list[tuple[Tensor, Tensor]]): Matches of the box, FGL
            and DDF terms (the GO-LSD union; denoising: the DN matches).
        cls_normaliser (float): ``avg_factor`` of the class term.
        box_normaliser (float): ``avg_factor`` of the box and FGL terms.
        fgl_targets (tuple[Tensor] | None): FGL bin targets of
            ``box_indices``; None = no FGL / DDF terms (no corners).
        teacher (DDFTeacher | None): None = no DDF term.
        targets (list[dict] | None): Targets of this entry when they differ
            from the step's (a class-agnostic encoder head: every label 0);
            None = the step's targets.
    """
    suffix: str
    output: SupervisedOutput
    box_indices: List[MatchIndices]
    cls_normaliser: float
    box_normaliser: float
    fgl_targets: Optional[FGLTargets]
    teacher: Optional[DDFTeacher]
    targets: Optional[Sequence[Dict[str, Tensor]]] = None
