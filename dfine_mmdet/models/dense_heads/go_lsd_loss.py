"""Matching and loss computation of D-FINE heads (GO-LSD over FDR outputs).

D-FINE (arXiv 2410.13842) supervises, per training step:

================  ==========================  ==============================
output            classification (``vfl``)    boxes (``bbox``, ``giou``) and
                                              FDR terms (``fgl``, ``ddf``)
================  ==========================  ==============================
last layer        own Hungarian / num_boxes   GO-LSD union / num_boxes_go;
                                              FGL only (it is the teacher)
aux layer i       own Hungarian / num_boxes   union; FGL + DDF (suffix
                                              ``_aux_i``)
``pre`` head      own Hungarian               union; no corners (``_pre``)
encoder top-k     own Hungarian               union; no corners (``_enc_0``)
DN layer i        fixed DN matches / N_dn     DN matches / N_dn; FGL + DDF
                                              (``_dn_i``; last one's DDF = 0)
DN ``pre``        DN matches                  DN matches (``_dn_pre``)
================  ==========================  ==============================

``num_boxes`` = #GT and ``num_boxes_go`` = #union pairs, both averaged over
GPUs (all-reduce mean when ``torch.distributed`` is initialised) and clamped
to >= 1; ``N_dn = num_boxes * dn_num_group`` (>= 1).  FGL targets are built
once per step by the FDR coder (``bbox_coder.encode``) from the reference
boxes of the last layer (union pairs) and once from the first denoising layer
(DN pairs); the DDF balance factors come from the union set and are reused
for the denoising layers.  Every term is multiplied by its ``loss_weight``
and passed through ``nan_to_num`` (NaN -> 0).  The keys are the official term
names (``loss_vfl``, ``loss_bbox_aux_0``, ``loss_fgl_dn_2``, ...): 20 terms
for 3 decoder layers without denoising, 38 with, 68 for 6 layers with
denoising.  With a classification loss other than
:class:`DFINEVarifocalLoss` (e.g. mmdet's ``FocalLoss``, which takes labels
only) the class term is named ``loss_cls``.

This is the one place of this computation: :class:`GOLSDLossMixin` is mixed
into :class:`~dfine_mmdet.models.dense_heads.DFINEHead` and
:class:`~dfine_mmdet.models.dense_heads.DINOFDRHead` (mmdet's DINO with FDR;
optional ``pre`` head, mmdet's denoising layout via :meth:`dn_matches`) and
can be mixed into any other DETR head whose decoder produces FDR corners (it
only needs the attributes built by :meth:`GOLSDLossMixin._init_go_lsd_losses`).
The losses themselves are the pure modules of ``dfine_mmdet.models.losses``
and mmdet's ``L1Loss`` / ``GIoULoss`` / ``bbox_overlaps`` (exact here: the same
arithmetic as the official ``box_ops``; mmdet's reduction adds ``float32
eps`` to the average factor, a relative change below 1.2e-7, and
``bbox_overlaps`` floors union/enclosing areas at 1e-6, which only matters
when both boxes are below 1e-6 of the image area, where the official code
yields NaN).  Boxes are converted to ``xyxy`` with widths/heights clamped at
0, as upstream.  Nothing is written into ``outputs`` / ``targets`` and no
state is kept between calls (the official criterion does both).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import bbox_overlaps
from mmengine.dist import all_reduce
from torch import Tensor

from ..layers.contrastive_denoising import dn_match_indices
from ..losses.ddf_loss import ddf_balance_factors
from ..losses.dfine_vfl_loss import DFINEVarifocalLoss
from ..utils import FGLTargets, MatchIndices, bbox_cxcywh_to_xyxy_clamped

#: Official D-FINE matching and loss settings (the head's config defaults).
GO_LSD_LOSS_DEFAULTS = dict(
    bbox_coder=dict(type='FDRBBoxCoder', reg_max=32, reg_scale=4.0, up=0.5),
    assigner=dict(
        type='DFINEHungarianAssigner',
        cost_class=2.0,
        cost_bbox=5.0,
        cost_giou=2.0,
        alpha=0.25,
        gamma=2.0),
    go_lsd_assigner=dict(type='GOLSDAssigner'),
    loss_cls=dict(
        type='DFINEVarifocalLoss', alpha=0.75, gamma=2.0, loss_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_iou=dict(type='GIoULoss', loss_weight=2.0),
    loss_fgl=dict(type='FineGrainedLocalizationLoss', loss_weight=0.15),
    loss_ddf=dict(
        type='DecoupledDistillationFocalLoss',
        temperature=5.0,
        loss_weight=1.5),
)


def _cfg(cfg: Optional[dict], name: str) -> dict:
    return copy.deepcopy(GO_LSD_LOSS_DEFAULTS[name] if cfg is None else cfg)


def _float32(obj):
    """Nested dicts/lists with floating tensors cast to float32 (new
    containers; a float32 tensor is returned as is, so graphs and the
    teacher/student aliasing are kept)."""
    if isinstance(obj, Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {k: _float32(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_float32(v) for v in obj)
    return obj


def reduce_count(count: int, device: torch.device) -> float:
    """GPU-averaged count clamped to >= 1 (official normaliser)."""
    value = torch.as_tensor([count], dtype=torch.float, device=device)
    all_reduce(value, op='mean')  # no-op unless distributed
    return torch.clamp(value, min=1).item()


def _src_idx(indices: Sequence[MatchIndices]) -> Tuple[Tensor, Tensor]:
    batch_idx = torch.cat(
        [torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    return batch_idx, src_idx


def _matched(targets: Sequence[Dict[str, Tensor]],
             indices: Sequence[MatchIndices], key: str) -> Tensor:
    if len(targets) != len(indices):
        raise ValueError(f'{len(indices)} match lists for {len(targets)} '
                         'images')
    return torch.cat([t[key][gt] for t, (_, gt) in zip(targets, indices)],
                     dim=0)


def _aligned_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of matched pairs of normalised ``cxcywh`` boxes, (n,)."""
    return bbox_overlaps(
        bbox_cxcywh_to_xyxy_clamped(boxes1),
        bbox_cxcywh_to_xyxy_clamped(boxes2),
        mode='iou',
        is_aligned=True)


class GOLSDLossMixin:
    """Hungarian matching, GO-LSD union, denoising matches, normalisers and
    all weighted loss terms of a D-FINE style head.

    A head using it calls :meth:`_init_go_lsd_losses` in ``__init__`` (after
    setting ``self.num_classes``) and :meth:`loss_by_outputs` from its
    ``loss_by_feat``.

    Inputs of :meth:`loss_by_outputs`: ``outputs`` in the structure of the
    official training-mode decoder output (``pred_logits`` (B, Q, C),
    ``pred_boxes`` (B, Q, 4) normalised ``cxcywh``, ``pred_corners`` (B, Q,
    4 * (reg_max + 1)), ``ref_points`` (B, Q, 4), ``up`` (1,), ``reg_scale``
    (1,) (``None`` for either = the coder's own ``up`` / ``reg_scale``),
    ``aux_outputs`` (list of dicts with the same keys plus
    ``teacher_corners`` / ``teacher_logits``), ``pre_outputs``,
    ``enc_aux_outputs``, ``enc_meta`` (``class_agnostic``), and with
    denoising ``dn_outputs``, ``dn_pre_outputs``, ``dn_meta``) and
    ``targets``: per image ``labels`` (n,) int64 and ``boxes`` (n, 4)
    normalised ``cxcywh``.
    """

    @staticmethod
    def layer_outputs(logits: Tensor, boxes: Tensor, corners: Tensor,
                      refs: Tensor) -> List[Dict[str, Tensor]]:
        """Per-layer output dicts of :meth:`loss_by_outputs`
        (``aux_outputs`` / ``dn_outputs``) from stacked ``[L, B, Q, *]``
        logits, boxes, corner logits and reference boxes: one tensor object
        per layer output, the last layer (every layer's DDF teacher) shared
        by all."""
        lg, bx, cn, rf = (t.unbind(0) for t in (logits, boxes, corners, refs))
        return [
            dict(
                pred_logits=lg[i],
                pred_boxes=bx[i],
                pred_corners=cn[i],
                ref_points=rf[i],
                teacher_corners=cn[-1],
                teacher_logits=lg[-1]) for i in range(len(lg))
        ]

    def _init_go_lsd_losses(self,
                            bbox_coder: Optional[dict] = None,
                            assigner: Optional[dict] = None,
                            go_lsd_assigner: Optional[dict] = None,
                            loss_cls: Optional[dict] = None,
                            loss_bbox: Optional[dict] = None,
                            loss_iou: Optional[dict] = None,
                            loss_fgl: Optional[dict] = None,
                            loss_ddf: Optional[dict] = None,
                            ddf_ref_batch_size: int = 8) -> None:
        """Build the coder, assigners and losses (``None`` = official
        default; ``loss_fgl`` / ``loss_ddf`` = ``dict()`` disables the term).

        ``ddf_ref_batch_size`` is the constant of the DDF balance factors
        ``sqrt(count * ref / B)`` (official 8).
        """
        self.bbox_coder = TASK_UTILS.build(_cfg(bbox_coder, 'bbox_coder'))
        self.assigner = TASK_UTILS.build(_cfg(assigner, 'assigner'))
        self.go_lsd_assigner = TASK_UTILS.build(
            _cfg(go_lsd_assigner, 'go_lsd_assigner'))
        self.loss_cls = MODELS.build(_cfg(loss_cls, 'loss_cls'))
        self.loss_bbox = MODELS.build(_cfg(loss_bbox, 'loss_bbox'))
        self.loss_iou = MODELS.build(_cfg(loss_iou, 'loss_iou'))
        fgl_cfg = _cfg(loss_fgl, 'loss_fgl')
        ddf_cfg = _cfg(loss_ddf, 'loss_ddf')
        self.loss_fgl = MODELS.build(fgl_cfg) if fgl_cfg else None
        self.loss_ddf = MODELS.build(ddf_cfg) if ddf_cfg else None
        self.ddf_ref_batch_size = ddf_ref_batch_size

    @property
    def reg_max(self) -> int:
        """FDR bin intervals per edge (from the coder)."""
        return self.bbox_coder.reg_max

    # -------------------------------------------------------- loss terms
    def _match(self, out: Dict, targets: Sequence[Dict],
               device: torch.device) -> List[MatchIndices]:
        indices = self.assigner.match(out['pred_logits'], out['pred_boxes'],
                                      targets)
        return [(i.to(device), j.to(device)) for i, j in indices]

    def _loss_cls(self, out: Dict, targets: Sequence[Dict],
                  indices: Sequence[MatchIndices],
                  num_boxes: float) -> Dict[str, Tensor]:
        """VFL with IoU-aware targets (``loss_vfl``) or, for a label-only
        loss such as mmdet's ``FocalLoss``, ``loss_cls``."""
        logits = out['pred_logits']
        num_classes = logits.shape[-1]
        idx = _src_idx(indices)
        labels = torch.full(
            logits.shape[:2],
            num_classes,
            dtype=torch.int64,
            device=logits.device)
        labels[idx] = _matched(targets, indices, 'labels')
        # IoU-aware losses (VFL; DEIM's MAL sets ``iou_aware``) get the IoU of
        # each matched pair; the key comes from the loss's ``loss_name``
        if not (isinstance(self.loss_cls, DFINEVarifocalLoss)
                or getattr(self.loss_cls, 'iou_aware', False)):
            return dict(
                loss_cls=self.loss_cls(
                    logits.reshape(-1, num_classes),
                    labels.reshape(-1),
                    avg_factor=num_boxes))
        ious = _aligned_iou(out['pred_boxes'][idx],
                            _matched(targets, indices, 'boxes')).detach()
        scores = torch.zeros(
            logits.shape[:2], dtype=logits.dtype, device=logits.device)
        scores[idx] = ious.to(logits.dtype)
        name = getattr(self.loss_cls, 'loss_name', 'loss_vfl')
        return {
            name: self.loss_cls(logits, (labels, scores), avg_factor=num_boxes)
        }

    def _loss_boxes(self, out: Dict, targets: Sequence[Dict],
                    indices: Sequence[MatchIndices],
                    num_boxes: float) -> Dict[str, Tensor]:
        src = out['pred_boxes'][_src_idx(indices)]
        tgt = _matched(targets, indices, 'boxes')
        return dict(
            loss_bbox=self.loss_bbox(src, tgt, avg_factor=num_boxes),
            loss_giou=self.loss_iou(
                bbox_cxcywh_to_xyxy_clamped(src),
                bbox_cxcywh_to_xyxy_clamped(tgt),
                avg_factor=num_boxes))

    def fgl_targets(self, out: Dict, targets: Sequence[Dict],
                    indices: Sequence[MatchIndices], up: Tensor,
                    reg_scale: Tensor) -> FGLTargets:
        """FGL bin targets of the matched pairs: the ground truth encoded by
        the FDR coder relative to the (detached) reference boxes."""
        ref = out['ref_points'][_src_idx(indices)].detach()
        gt = bbox_cxcywh_to_xyxy_clamped(_matched(targets, indices, 'boxes'))
        with torch.no_grad():
            return self.bbox_coder.encode(ref, gt, up=up, reg_scale=reg_scale)

    def _loss_local(self, out: Dict, targets: Sequence[Dict],
                    indices: Sequence[MatchIndices], num_boxes: float,
                    fgl_targets: FGLTargets,
                    ddf_factors: Tuple[Tensor, Tensor]) -> Dict[str, Tensor]:
        """FGL on the matched pairs and, for a student layer, DDF."""
        losses = {}
        if 'pred_corners' not in out:
            return losses
        bins = self.reg_max + 1
        if out['pred_corners'].shape[-1] != 4 * bins:
            raise ValueError(
                f'pred_corners has {out["pred_corners"].shape[-1]} values '
                f'per query, bbox_coder.reg_max={self.reg_max} needs '
                f'{4 * bins}')
        idx = _src_idx(indices)
        ious = _aligned_iou(out['pred_boxes'][idx],
                            _matched(targets, indices, 'boxes')).detach()
        if self.loss_fgl is not None:
            losses['loss_fgl'] = self.loss_fgl(
                out['pred_corners'][idx].reshape(-1, bins),
                fgl_targets,
                ious.repeat_interleave(4),
                avg_factor=num_boxes)

        if 'teacher_corners' in out and self.loss_ddf is not None:
            confidence = out['teacher_logits'].detach().sigmoid().max(-1)[0]
            weight = confidence.index_put(idx, ious.to(confidence.dtype))
            pos_mask = torch.zeros_like(confidence, dtype=torch.bool)
            pos_mask[idx] = True
            losses['loss_ddf'] = self.loss_ddf(
                out['pred_corners'].reshape(-1, bins),
                out['teacher_corners'].reshape(-1, bins),
                weight.repeat_interleave(4, dim=-1).reshape(-1),
                pos_mask.repeat_interleave(4, dim=-1).reshape(-1),
                *ddf_factors)
        return losses

    def _output_losses(self, out: Dict, targets: Sequence[Dict],
                       cls_indices: Sequence[MatchIndices],
                       box_indices: Sequence[MatchIndices],
                       num_cls: float, num_box: float,
                       fgl_targets: Optional[FGLTargets],
                       ddf_factors: Tuple[Tensor, Tensor]) -> Dict:
        losses = self._loss_cls(out, targets, cls_indices, num_cls)
        losses.update(self._loss_boxes(out, targets, box_indices, num_box))
        if fgl_targets is not None:
            losses.update(
                self._loss_local(out, targets, box_indices, num_box,
                                 fgl_targets, ddf_factors))
        return losses

    # ------------------------------------------------------------ matching
    def get_go_lsd_targets(self, outputs: Dict,
                           targets: Sequence[Dict[str, Tensor]]) -> Dict:
        """Matching state of one step (no losses).

        Returns:
            dict: ``indices`` (last layer), ``aux_indices``, ``pre_indices``,
            ``enc_indices``, ``go_indices`` (each a list over images of
            ``(query_idx, gt_idx)``), ``enc_targets``, ``num_boxes``,
            ``num_boxes_go``, ``fgl_targets`` (``(position, weight_right,
            weight_left)``, each (4 * pairs,); ``None`` without corners),
            ``ddf_num_pos``, ``ddf_num_neg``.
        """
        logits = outputs['pred_logits']
        device = logits.device
        bs = logits.shape[0]
        if logits.shape[-1] != self.num_classes:
            raise ValueError(
                f'{type(self).__name__}: outputs["pred_logits"] has '
                f'{logits.shape[-1]} classes, num_classes={self.num_classes}')
        if len(targets) != bs:
            raise ValueError(f'{type(self).__name__}: {len(targets)} targets '
                             f'for a batch of {bs} images')
        aux_list = list(outputs.get('aux_outputs', []))
        pre_out = outputs.get('pre_outputs')
        enc_list = list(outputs.get('enc_aux_outputs', []))

        # class-agnostic encoder head (no official config uses it): match and
        # supervise it against label 0 (upstream matches with the original
        # labels, which would index past its single logit)
        enc_targets = targets
        if enc_list and outputs.get('enc_meta', {}).get('class_agnostic'):
            enc_targets = [
                dict(t, labels=torch.zeros_like(t['labels']))
                for t in targets
            ]

        # one-to-one matches of every output, then their GO-LSD union
        indices = self._match(outputs, targets, device)
        aux_indices = [self._match(o, targets, device) for o in aux_list]
        pre_indices = (
            self._match(pre_out, targets, device)
            if pre_out is not None else None)
        enc_indices = [
            self._match(o, enc_targets, device) for o in enc_list
        ]
        go_indices = self.go_lsd_assigner.assign(
            [indices] + aux_indices +
            ([pre_indices] if pre_indices is not None else []) +
            enc_indices)
        num_boxes_go = reduce_count(
            sum(len(q) for q, _ in go_indices), device)
        num_boxes = reduce_count(
            sum(len(t['labels']) for t in targets), device)

        # DDF balance factors from the GO-LSD matched set (per edge)
        go_mask = torch.zeros(
            logits.shape[:2], dtype=torch.bool, device=device)
        go_mask[_src_idx(go_indices)] = True
        ddf_num_pos, ddf_num_neg = ddf_balance_factors(
            go_mask.repeat_interleave(4, dim=-1).reshape(-1), bs,
            self.ddf_ref_batch_size)
        fgl_targets = None
        if 'pred_corners' in outputs:
            fgl_targets = self.fgl_targets(outputs, targets, go_indices,
                                           outputs['up'],
                                           outputs['reg_scale'])
        return dict(
            indices=indices,
            aux_indices=aux_indices,
            pre_indices=pre_indices,
            enc_indices=enc_indices,
            enc_targets=enc_targets,
            go_indices=go_indices,
            num_boxes=num_boxes,
            num_boxes_go=num_boxes_go,
            fgl_targets=fgl_targets,
            ddf_num_pos=ddf_num_pos,
            ddf_num_neg=ddf_num_neg)

    def get_dn_targets(self, outputs: Dict,
                       targets: Sequence[Dict[str, Tensor]],
                       num_boxes: float) -> Dict:
        """Fixed denoising matches (query ``g * max_gt + j`` <-> gt ``j``),
        the DN normaliser ``num_boxes * dn_num_group`` (>= 1) and the FGL
        targets of the first denoising layer.

        Returns:
            dict: ``dn_indices``, ``dn_num_boxes``, ``fgl_targets_dn``.
        """
        if 'dn_meta' not in outputs:
            raise KeyError(f'{type(self).__name__}: outputs has '
                           '"dn_outputs" but no "dn_meta"')
        dn_list = outputs['dn_outputs']
        device = outputs['pred_logits'].device
        dn_indices, num_groups = self.dn_matches(outputs['dn_meta'], targets,
                                                 device)
        dn_num_boxes = num_boxes * num_groups
        dn_num_boxes = dn_num_boxes if dn_num_boxes > 0 else 1
        fgl_targets_dn = None
        if 'pred_corners' in dn_list[0]:
            fgl_targets_dn = self.fgl_targets(dn_list[0], targets, dn_indices,
                                              outputs['up'],
                                              outputs['reg_scale'])
        return dict(
            dn_indices=dn_indices,
            dn_num_boxes=dn_num_boxes,
            fgl_targets_dn=fgl_targets_dn)

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
                                   [len(t['labels']) for t in targets],
                                   device)
        return indices, dn_meta['dn_num_group']

    # ------------------------------------------------------------- losses
    def loss_by_outputs(self, outputs: Dict,
                        targets: Sequence[Dict[str, Tensor]]
                        ) -> Dict[str, Tensor]:
        """All weighted loss terms (see the module docstring).

        As upstream (which calls the criterion outside ``autocast``), the
        losses are computed in float32 with autocast disabled, so mixed
        precision training only changes the precision of the predictions.

        Returns:
            dict[str, Tensor]: Official term name -> scalar, already
            multiplied by its weight and NaN-cleaned.
        """
        device_type = outputs['pred_logits'].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            outputs, targets = _float32(outputs), _float32(targets)
            losses = self._matching_losses(outputs, targets)
        return {k: torch.nan_to_num(v, nan=0.0) for k, v in losses.items()}

    def _matching_losses(self, outputs: Dict,
                         targets: Sequence[Dict[str, Tensor]]
                         ) -> Dict[str, Tensor]:
        m = self.get_go_lsd_targets(outputs, targets)
        go_indices = m['go_indices']
        num_boxes, num_boxes_go = m['num_boxes'], m['num_boxes_go']
        ddf_factors = (m['ddf_num_pos'], m['ddf_num_neg'])
        aux_list = list(outputs.get('aux_outputs', []))
        enc_list = list(outputs.get('enc_aux_outputs', []))
        pre_out = outputs.get('pre_outputs')

        losses: Dict[str, Tensor] = {}

        def add(terms: Dict[str, Tensor], suffix: str) -> None:
            for k, v in terms.items():
                losses[k + suffix] = v

        add(
            self._output_losses(outputs, targets, m['indices'], go_indices,
                                num_boxes, num_boxes_go, m['fgl_targets'],
                                ddf_factors), '')
        for i, out in enumerate(aux_list):
            add(
                self._output_losses(out, targets, m['aux_indices'][i],
                                    go_indices, num_boxes, num_boxes_go,
                                    m['fgl_targets'], ddf_factors),
                f'_aux_{i}')
        if pre_out is not None:
            add(
                self._output_losses(pre_out, targets, m['pre_indices'],
                                    go_indices, num_boxes, num_boxes_go,
                                    None, ddf_factors), '_pre')
        for i, out in enumerate(enc_list):
            add(
                self._output_losses(out, m['enc_targets'],
                                    m['enc_indices'][i], go_indices,
                                    num_boxes, num_boxes_go, None,
                                    ddf_factors), f'_enc_{i}')
        if outputs.get('dn_outputs'):
            losses.update(
                self.loss_dn(outputs, targets, num_boxes, ddf_factors))
        return losses

    def loss_dn(self, outputs: Dict, targets: Sequence[Dict[str, Tensor]],
                num_boxes: float,
                ddf_factors: Tuple[Tensor, Tensor]) -> Dict[str, Tensor]:
        """Denoising part (``DINOHead.loss_dn`` counterpart): every DN layer
        (``_dn_i``) and the DN ``pre`` head (``_dn_pre``) against the fixed
        DN matches; DDF uses the balance factors of the matching part."""
        dn = self.get_dn_targets(outputs, targets, num_boxes)
        dn_indices, dn_num_boxes = dn['dn_indices'], dn['dn_num_boxes']
        losses: Dict[str, Tensor] = {}
        for i, out in enumerate(outputs['dn_outputs']):
            for k, v in self._output_losses(
                    out, targets, dn_indices, dn_indices, dn_num_boxes,
                    dn_num_boxes, dn['fgl_targets_dn'],
                    ddf_factors).items():
                losses[f'{k}_dn_{i}'] = v
        if outputs.get('dn_pre_outputs') is not None:
            for k, v in self._output_losses(
                    outputs['dn_pre_outputs'], targets, dn_indices,
                    dn_indices, dn_num_boxes, dn_num_boxes, None,
                    ddf_factors).items():
                losses[f'{k}_dn_pre'] = v
        return losses
