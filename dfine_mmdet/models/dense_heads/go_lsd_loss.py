"""GO-LSD training of a DETR head with FDR corners: the supervision plan and
the one loop that consumes it.

D-FINE (arXiv 2410.13842) supervises, per training step, every output with
the same terms (:mod:`dfine_mmdet.models.losses.set_prediction_losses`);
what differs is written once, as code, in
:meth:`GOLSDLossMixin.supervision_plan` (one
:class:`~.supervision_plan.Supervision` entry per output):

================  ==========================  ==============================
output (suffix)   class term: matches /       box, FGL, DDF terms: matches /
                  normaliser                  normaliser; FDR terms
================  ==========================  ==============================
last layer ``''``  own Hungarian / num_boxes  GO-LSD union / num_boxes_go;
                                              FGL (it is the DDF teacher)
layer i ``_aux_i`` own Hungarian / num_boxes  union / num_boxes_go; FGL + DDF
``_pre`` head      own Hungarian / num_boxes  union / num_boxes_go; no FDR
encoder ``_enc_0`` own Hungarian / num_boxes  union / num_boxes_go; no FDR
DN layer ``_dn_i`` DN matches / N_dn          DN matches / N_dn; FGL + DDF
                                              (last DN layer's DDF = 0)
``_dn_pre``        DN matches / N_dn          DN matches / N_dn; no FDR
================  ==========================  ==============================

``num_boxes`` = #GT and ``num_boxes_go`` = #union pairs, both averaged over
GPUs (all-reduce mean when ``torch.distributed`` is initialised) and clamped
to >= 1; ``N_dn = num_boxes * dn_num_group`` (>= 1).  The union is
:class:`GOLSDAssigner` over ``[last] + aux + [pre] + enc`` matches.  FGL
targets are encoded once by the head's FDR coder (``bbox_coder.encode``)
relative to the fixed reference boxes, for the union pairs and for the DN
pairs; the DDF teacher is the last layer of the same query group and its
balance factors come from the union set (also for the DN layers, as
upstream).  Every term is multiplied by its ``loss_weight`` and passed
through ``nan_to_num`` (NaN -> 0).  Keys: the term name (the class loss's
:func:`~dfine_mmdet.models.losses.set_prediction_losses.loss_key`:
``loss_vfl``, ``loss_mal`` or ``loss_cls``; ``loss_bbox``, ``loss_giou``,
``loss_fgl``, ``loss_ddf``) + the suffix: 20 terms for 3 decoder layers
without denoising, 38 with, 68 for 6 layers with denoising, in the order of
the official ``DFINECriterion`` dict.

A head uses it in three steps (``DFINEHead``, ``DINOFDRHead``; any other DETR
head whose decoder produces FDR corners can do the same):

1. ``__init__``: build ``self.bbox_coder`` (``FDRBBoxCoder``, the one source
   of ``reg_max`` / ``reg_scale`` / ``up``), ``self.assigner`` (a batched
   ``match(logits, boxes, targets)`` matcher), ``self.loss_cls`` /
   ``self.loss_bbox`` / ``self.loss_iou``, then call
   :meth:`GOLSDLossMixin._init_go_lsd_losses` (GO-LSD union, FGL, DDF);
2. ``loss_by_feat``: arrange the outputs as
   :class:`~.supervision_plan.FDRPredictions` /
   :class:`~.supervision_plan.BoxPredictions`;
3. return :meth:`GOLSDLossMixin.go_lsd_loss` of them.

Nothing is written into the inputs and no state is kept between calls.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.dist import all_reduce
from torch import Tensor

from ..layers.contrastive_denoising import dn_match_indices
from ..losses.ddf_loss import ddf_balance_factors
from ..losses.set_prediction_losses import (box_losses, classification_loss,
                                            ddf_loss, fgl_loss, matched_ious,
                                            matched_targets, query_index)
from ..utils import FGLTargets, MatchIndices, bbox_cxcywh_to_xyxy_clamped
from .supervision_plan import (BoxPredictions, DDFTeacher, FDRPredictions,
                               SupervisedOutput, Supervision)


def _float32(obj):
    """Records / lists with floating tensors cast to float32 (new
    containers; a float32 tensor is returned as is, so graphs are kept)."""
    if isinstance(obj, Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, tuple) and hasattr(obj, '_fields'):
        return type(obj)(*(_float32(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_float32(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _float32(v) for k, v in obj.items()}
    return obj


def reduce_count(count: int, device: torch.device) -> float:
    """GPU-averaged count clamped to >= 1 (official normaliser)."""
    value = torch.as_tensor([count], dtype=torch.float, device=device)
    all_reduce(value, op='mean')  # no-op unless distributed
    return torch.clamp(value, min=1).item()


class GOLSDLossMixin:
    """Supervision plan (matching, GO-LSD union, denoising matches,
    normalisers, FGL targets, DDF teachers) and the loss loop of a DETR head
    with FDR corners (see the module docstring)."""

    #: the encoder's top-k head is class-agnostic (mmdet's two-stage
    #: Deformable DETR ranks proposals by its first logit): its ``_enc_*``
    #: entries are matched and supervised with every label 0
    class_agnostic_enc: bool = False

    def _init_go_lsd_losses(self,
                            go_lsd_assigner: dict,
                            loss_fgl: dict,
                            loss_ddf: dict,
                            ddf_ref_batch_size: int = 8,
                            union_box_losses: bool = True) -> None:
        """Build the GO-LSD union assigner and the FDR losses
        (``loss_fgl`` / ``loss_ddf`` = ``dict()`` disables the term).

        ``ddf_ref_batch_size`` is the constant of the DDF balance factors
        ``sqrt(count * ref / B)`` (official 8).  ``union_box_losses=False``
        supervises the boxes (L1, GIoU, FGL) of every output on its own
        Hungarian match over ``num_boxes`` instead of the GO-LSD union (the
        official ``use_uni_set=False``); DDF then also takes that match as
        its matched queries, while its balance factors still come from the
        union.
        """
        self.union_box_losses = union_box_losses
        self.go_lsd_assigner = TASK_UTILS.build(go_lsd_assigner)
        self.loss_fgl = MODELS.build(loss_fgl) if loss_fgl else None
        self.loss_ddf = MODELS.build(loss_ddf) if loss_ddf else None
        self.ddf_ref_batch_size = ddf_ref_batch_size

    @property
    def reg_max(self) -> int:
        """FDR bin intervals per edge (the coder's)."""
        return self.bbox_coder.reg_max

    # ------------------------------------------------------------ the plan
    def _match(self, logits: Tensor, boxes: Tensor,
               targets: Sequence[Dict]) -> List[MatchIndices]:
        indices = self.assigner.match(logits, boxes, targets)
        return [(i.to(logits.device), j.to(logits.device)) for i, j in indices]

    def fgl_targets(self, refs: Tensor, targets: Sequence[Dict],
                    indices: Sequence[MatchIndices]) -> FGLTargets:
        """FGL bin targets of the matched pairs: the ground truth encoded by
        the FDR coder relative to the (detached) fixed references
        ``refs`` ``[B, Q, 4]``."""
        ref = refs[query_index(indices)].detach()
        gt = bbox_cxcywh_to_xyxy_clamped(
            matched_targets(targets, indices, 'boxes'))
        with torch.no_grad():
            return self.bbox_coder.encode(ref, gt)

    def _check(self, layers: FDRPredictions, targets: Sequence[Dict]) -> None:
        num_layers, bs, _, num_classes = layers.logits.shape
        name = type(self).__name__
        if num_classes != self.num_classes:
            raise ValueError(f'{name}: the layer logits have {num_classes} '
                             f'classes, num_classes={self.num_classes}')
        if len(targets) != bs:
            raise ValueError(f'{name}: {len(targets)} targets for a batch '
                             f'of {bs} images')
        if layers.corners.shape[-1] != 4 * (self.reg_max + 1):
            raise ValueError(
                f'{name}: the corner logits have {layers.corners.shape[-1]} '
                f'values per query, bbox_coder.reg_max={self.reg_max} needs '
                f'{4 * (self.reg_max + 1)}')

    def supervision_plan(self,
                         layers: FDRPredictions,
                         targets: Sequence[Dict[str, Tensor]],
                         pre: Optional[BoxPredictions] = None,
                         enc: Sequence[BoxPredictions] = (),
                         dn_layers: Optional[FDRPredictions] = None,
                         dn_pre: Optional[BoxPredictions] = None,
                         dn_meta: Optional[dict] = None) -> List[Supervision]:
        """Match every output and state how each one is supervised (the
        table of the module docstring, in the official term order).

        Args:
            layers (FDRPredictions): Matching-query decoder layers.
            targets (list[dict]): Per image ``labels`` ``[n]`` int64 and
                ``boxes`` ``[n, 4]`` normalised ``cxcywh``.
            pre (BoxPredictions, optional): Layer-0 ``pre`` head.
            enc (list[BoxPredictions]): Encoder top-k outputs.
            dn_layers (FDRPredictions, optional): Denoising-query layers.
            dn_pre (BoxPredictions, optional): Denoising ``pre`` head.
            dn_meta (dict, optional): Denoising layout, read by
                :meth:`dn_matches` (required with ``dn_layers``).

        Returns:
            list[Supervision]
        """
        self._check(layers, targets)
        device = layers.logits.device
        num_layers, bs = layers.logits.shape[:2]
        own = [
            self._match(layers.logits[i], layers.boxes[i], targets)
            for i in range(num_layers)
        ]
        pre_own = self._match(pre.logits, pre.boxes, targets) \
            if pre is not None else None
        # a class-agnostic encoder head (mmdet's two-stage Deformable DETR)
        # is matched and supervised with every label 0
        enc_targets = [
            dict(t, labels=torch.zeros_like(t['labels'])) for t in targets
        ] if self.class_agnostic_enc else None
        enc_own = [
            self._match(e.logits, e.boxes, enc_targets or targets) for e in enc
        ]
        union = self.go_lsd_assigner.assign([own[-1]] + own[:-1] + (
            [pre_own] if pre is not None else []) + enc_own)
        num_union = reduce_count(sum(len(q) for q, _ in union), device)
        num_boxes = reduce_count(
            sum(len(t['labels']) for t in targets), device)
        union_mask = torch.zeros(
            layers.logits.shape[1:3], dtype=torch.bool, device=device)
        union_mask[query_index(union)] = True
        balance = ddf_balance_factors(
            union_mask.repeat_interleave(4, dim=-1).reshape(-1), bs,
            self.ddf_ref_batch_size)
        fgl = self.fgl_targets(layers.refs, targets, union)

        def layer(preds: FDRPredictions, i: int,
                  indices: List[MatchIndices]) -> SupervisedOutput:
            return SupervisedOutput(preds.logits[i], preds.boxes[i],
                                    preds.corners[i], preds.refs, indices)

        def box_sup(indices: List[MatchIndices], with_fgl: bool) -> tuple:
            """``(box_indices, cls_normaliser, box_normaliser,
            fgl_targets)`` of an entry whose own matches are ``indices``."""
            if self.union_box_losses:
                return union, num_boxes, num_union, fgl if with_fgl else None
            return indices, num_boxes, num_boxes, (
                self.fgl_targets(layers.refs, targets, indices)
                if with_fgl else None)

        teacher = DDFTeacher(layers.corners[-1], layers.logits[-1], balance)
        plan = [
            Supervision('', layer(layers, -1, own[-1]),
                        *box_sup(own[-1], True), None)
        ]
        plan += [
            Supervision(f'_aux_{i}', layer(layers, i, own[i]),
                        *box_sup(own[i], True), teacher)
            for i in range(num_layers - 1)
        ]
        if pre is not None:
            plan.append(
                Supervision('_pre', SupervisedOutput(*pre, None, None,
                                                     pre_own),
                            *box_sup(pre_own, False), None))
        plan += [
            Supervision(f'_enc_{i}', SupervisedOutput(*e, None, None, idx),
                        *box_sup(idx, False), None, enc_targets)
            for i, (e, idx) in enumerate(zip(enc, enc_own))
        ]
        if dn_layers is None or len(dn_layers.logits) == 0:
            return plan

        if dn_meta is None:
            raise KeyError(f'{type(self).__name__}: denoising outputs '
                           'without dn_meta')
        dn, num_groups = self.dn_matches(dn_meta, targets, device)
        num_dn = num_boxes * num_groups
        num_dn = num_dn if num_dn > 0 else 1
        fgl_dn = self.fgl_targets(dn_layers.refs, targets, dn)
        dn_teacher = DDFTeacher(dn_layers.corners[-1], dn_layers.logits[-1],
                                balance)
        plan += [
            Supervision(f'_dn_{i}', layer(dn_layers, i, dn), dn, num_dn,
                        num_dn, fgl_dn, dn_teacher)
            for i in range(len(dn_layers.logits))
        ]
        if dn_pre is not None:
            plan.append(
                Supervision('_dn_pre',
                            SupervisedOutput(*dn_pre, None, None, dn), dn,
                            num_dn, num_dn, None, None))
        return plan

    def dn_matches(self, dn_meta: Dict, targets: Sequence[Dict[str, Tensor]],
                   device: torch.device) -> Tuple[List[MatchIndices], int]:
        """Fixed denoising matches and the number of denoising groups.

        This is the one place that reads the denoising-query layout; the
        default is that of :class:`DFINEContrastiveDenoising` (``dn_meta``
        with ``dn_positive_idx`` / ``dn_num_group``).  A head fed by another
        query generator (e.g. mmdet's ``CdnQueryGenerator``, see
        :class:`~dfine_mmdet.models.dense_heads.DINOFDRHead`) overrides it.

        Returns:
            tuple: per image ``(dn_query_idx, gt_idx)`` int64 (gt indices
            ``arange(n)`` tiled over the groups) and the group count.
        """
        indices = dn_match_indices(dn_meta,
                                   [len(t['labels']) for t in targets], device)
        return indices, dn_meta['dn_num_group']

    # ------------------------------------------------------------ the loop
    def go_lsd_loss(self,
                    layers: FDRPredictions,
                    targets: Sequence[Dict[str, Tensor]],
                    pre: Optional[BoxPredictions] = None,
                    enc: Sequence[BoxPredictions] = (),
                    dn_layers: Optional[FDRPredictions] = None,
                    dn_pre: Optional[BoxPredictions] = None,
                    dn_meta: Optional[dict] = None) -> Dict[str, Tensor]:
        """All weighted loss terms: :meth:`supervision_plan`, then one loop
        over its entries (arguments as there).

        As upstream (which calls the criterion outside ``autocast``), the
        losses are computed in float32 with autocast disabled, so mixed
        precision training only changes the precision of the predictions.

        Returns:
            dict[str, Tensor]: term name + suffix -> scalar, already
            multiplied by its weight and NaN-cleaned.
        """
        losses: Dict[str, Tensor] = {}
        device_type = layers.logits.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            layers, pre, enc, dn_layers, dn_pre, targets = _float32(
                (layers, pre, list(enc), dn_layers, dn_pre, list(targets)))
            plan = self.supervision_plan(layers, targets, pre, enc, dn_layers,
                                         dn_pre, dn_meta)
            for entry in plan:
                out = entry.output
                entry_targets = targets if entry.targets is None \
                    else entry.targets
                key, value = classification_loss(self.loss_cls, out.logits,
                                                 out.boxes, entry_targets,
                                                 out.indices,
                                                 entry.cls_normaliser)
                terms = {key: value}
                terms.update(
                    box_losses(self.loss_bbox, self.loss_iou, out.boxes,
                               targets, entry.box_indices,
                               entry.box_normaliser))
                if entry.fgl_targets is not None:
                    ious = matched_ious(out.boxes, targets, entry.box_indices)
                    if self.loss_fgl is not None:
                        terms['loss_fgl'] = fgl_loss(self.loss_fgl,
                                                     out.corners,
                                                     entry.box_indices,
                                                     entry.fgl_targets, ious,
                                                     entry.box_normaliser)
                    if entry.teacher is not None and \
                            self.loss_ddf is not None:
                        terms['loss_ddf'] = ddf_loss(self.loss_ddf,
                                                     out.corners,
                                                     entry.teacher.corners,
                                                     entry.teacher.logits,
                                                     entry.box_indices, ious,
                                                     entry.teacher.balance)
                losses.update((k + entry.suffix, v) for k, v in terms.items())
        return {k: torch.nan_to_num(v, nan=0.0) for k, v in losses.items()}
