"""D-FINE training criterion: matching + all loss terms of one forward pass.

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
once per step from the reference boxes of the last layer (union pairs) and
once from the first denoising layer (DN pairs); the DDF balance factors come
from the union set and are reused for the denoising layers.  Every term is
multiplied by its ``loss_weight`` and passed through ``nan_to_num`` (NaN ->
0).  The keys are the official term names (``loss_vfl``, ``loss_bbox_aux_0``,
``loss_fgl_dn_2``, ...): 20 terms for 3 decoder layers without denoising, 38
with, 68 for 6 layers with denoising.

Building blocks: :class:`DFINEHungarianAssigner`, :class:`GOLSDAssigner`,
:class:`DFINEVarifocalLoss`, mmdet's ``L1Loss`` and ``GIoULoss`` and
``bbox_overlaps`` (reused because they are exact here: the same arithmetic as
the official ``box_ops``; mmdet's reduction adds ``float32 eps`` to the
average factor, a relative change below 1.2e-7, and ``bbox_overlaps``
floors union/enclosing areas at 1e-6, which only matters when both boxes
are below 1e-6 of the image area, where the official code yields NaN),
:class:`FineGrainedLocalizationLoss`, :class:`DecoupledDistillationFocalLoss`
and the FDR coder's ``bbox2distance``.  Boxes are converted to ``xyxy`` with
widths/heights clamped at 0, as upstream.

Unlike the official criterion this module never writes into ``outputs`` or
``targets`` (the official one stores ``up``/``reg_scale``/``is_dn`` in the
auxiliary dicts and caches state between calls); the matching results of the
last call are kept for inspection, see :meth:`last_matching_results`.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import bbox_overlaps
from mmengine.dist import all_reduce
from torch import Tensor

from ..layers.contrastive_denoising import dn_match_indices
from ..task_modules.assigners.dfine_hungarian_assigner import \
    bbox_cxcywh_to_xyxy_clamped
from ..task_modules.coders.fdr_coder import bbox2distance
from .ddf_loss import ddf_balance_factors

MatchIndices = Tuple[Tensor, Tensor]
FGLTargets = Tuple[Tensor, Tensor, Tensor]

_DEFAULTS = dict(
    assigner=dict(
        type='DFINEHungarianAssigner',
        cost_class=2.0,
        cost_bbox=5.0,
        cost_giou=2.0,
        alpha=0.25,
        gamma=2.0),
    go_lsd_assigner=dict(type='GOLSDAssigner'),
    loss_vfl=dict(
        type='DFINEVarifocalLoss', alpha=0.75, gamma=2.0, loss_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_giou=dict(type='GIoULoss', loss_weight=2.0),
    loss_fgl=dict(type='FineGrainedLocalizationLoss', loss_weight=0.15),
    loss_ddf=dict(
        type='DecoupledDistillationFocalLoss',
        temperature=5.0,
        loss_weight=1.5),
)


def _cfg(cfg: Optional[dict], name: str) -> dict:
    return copy.deepcopy(_DEFAULTS[name] if cfg is None else cfg)


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


@MODELS.register_module()
class DFINECriterion(nn.Module):
    """D-FINE criterion (see the module docstring for what it computes).

    Args:
        num_classes (int): Number of classes ``C`` (checked against the
            logits). Default 80.
        reg_max (int): Bins per edge minus one. Default 32.
        assigner (dict, optional): Hungarian assigner config (TASK_UTILS).
            Default: :class:`DFINEHungarianAssigner` with the official
            costs (class 2, bbox 5, giou 2, alpha 0.25, gamma 2).
        go_lsd_assigner (dict, optional): Union assigner config.
        loss_vfl, loss_bbox, loss_giou, loss_fgl, loss_ddf (dict, optional):
            Loss configs (MODELS); defaults are the official terms with
            weights 1 / 5 / 2 / 0.15 / 1.5. ``loss_fgl`` / ``loss_ddf`` may
            be set to ``dict()`` to disable the term.
        ddf_ref_batch_size (int): Constant of the DDF balance factors
            ``sqrt(count * ref / B)``. Default 8 (official).

    Inputs of :meth:`forward`: ``outputs`` as the official decoder emits it
    in training (``pred_logits`` (B, Q, C), ``pred_boxes`` (B, Q, 4)
    normalised ``cxcywh``, ``pred_corners`` (B, Q, 4 * (reg_max + 1)),
    ``ref_points`` (B, Q, 4), ``up`` (1,), ``reg_scale`` (1,),
    ``aux_outputs`` (list of dicts with the same keys plus
    ``teacher_corners`` / ``teacher_logits``), ``pre_outputs``,
    ``enc_aux_outputs``, ``enc_meta`` (``class_agnostic``), and with
    denoising ``dn_outputs``, ``dn_pre_outputs``, ``dn_meta``) and
    ``targets``: per image ``labels`` (n,) int64 and ``boxes`` (n, 4)
    normalised ``cxcywh``.
    """

    def __init__(self,
                 num_classes: int = 80,
                 reg_max: int = 32,
                 assigner: Optional[dict] = None,
                 go_lsd_assigner: Optional[dict] = None,
                 loss_vfl: Optional[dict] = None,
                 loss_bbox: Optional[dict] = None,
                 loss_giou: Optional[dict] = None,
                 loss_fgl: Optional[dict] = None,
                 loss_ddf: Optional[dict] = None,
                 ddf_ref_batch_size: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.ddf_ref_batch_size = ddf_ref_batch_size
        self.assigner = TASK_UTILS.build(_cfg(assigner, 'assigner'))
        self.go_lsd_assigner = TASK_UTILS.build(
            _cfg(go_lsd_assigner, 'go_lsd_assigner'))
        self.loss_vfl = MODELS.build(_cfg(loss_vfl, 'loss_vfl'))
        self.loss_bbox = MODELS.build(_cfg(loss_bbox, 'loss_bbox'))
        self.loss_giou = MODELS.build(_cfg(loss_giou, 'loss_giou'))
        fgl_cfg = _cfg(loss_fgl, 'loss_fgl')
        ddf_cfg = _cfg(loss_ddf, 'loss_ddf')
        self.loss_fgl = MODELS.build(fgl_cfg) if fgl_cfg else None
        self.loss_ddf = MODELS.build(ddf_cfg) if ddf_cfg else None
        self._last_results: Dict = {}

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _reduce_count(count: int, device: torch.device) -> float:
        """GPU-averaged count clamped to >= 1 (official normaliser)."""
        value = torch.as_tensor([count], dtype=torch.float, device=device)
        all_reduce(value, op='mean')  # no-op unless distributed
        return torch.clamp(value, min=1).item()

    @staticmethod
    def _src_idx(indices: Sequence[MatchIndices]) -> Tuple[Tensor, Tensor]:
        batch_idx = torch.cat(
            [torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        return batch_idx, src_idx

    @staticmethod
    def _matched(targets: Sequence[Dict[str, Tensor]],
                 indices: Sequence[MatchIndices], key: str) -> Tensor:
        return torch.cat(
            [t[key][gt] for t, (_, gt) in zip(targets, indices)], dim=0)

    @staticmethod
    def _aligned_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
        """IoU of matched pairs of normalised ``cxcywh`` boxes, (n,)."""
        return bbox_overlaps(
            bbox_cxcywh_to_xyxy_clamped(boxes1),
            bbox_cxcywh_to_xyxy_clamped(boxes2),
            mode='iou',
            is_aligned=True)

    def _match(self, out: Dict, targets: Sequence[Dict],
               device: torch.device) -> List[MatchIndices]:
        indices = self.assigner.match(out['pred_logits'], out['pred_boxes'],
                                      targets)
        return [(i.to(device), j.to(device)) for i, j in indices]

    # -------------------------------------------------------- loss terms
    def _loss_vfl(self, out: Dict, targets: Sequence[Dict],
                  indices: Sequence[MatchIndices],
                  num_boxes: float) -> Dict[str, Tensor]:
        logits = out['pred_logits']
        idx = self._src_idx(indices)
        ious = self._aligned_iou(out['pred_boxes'][idx],
                                 self._matched(targets, indices,
                                               'boxes')).detach()
        labels = torch.full(
            logits.shape[:2],
            logits.shape[-1],
            dtype=torch.int64,
            device=logits.device)
        labels[idx] = self._matched(targets, indices, 'labels')
        scores = torch.zeros(
            logits.shape[:2], dtype=logits.dtype, device=logits.device)
        scores[idx] = ious.to(logits.dtype)
        return dict(
            loss_vfl=self.loss_vfl(
                logits, (labels, scores), avg_factor=num_boxes))

    def _loss_boxes(self, out: Dict, targets: Sequence[Dict],
                    indices: Sequence[MatchIndices],
                    num_boxes: float) -> Dict[str, Tensor]:
        src = out['pred_boxes'][self._src_idx(indices)]
        tgt = self._matched(targets, indices, 'boxes')
        return dict(
            loss_bbox=self.loss_bbox(src, tgt, avg_factor=num_boxes),
            loss_giou=self.loss_giou(
                bbox_cxcywh_to_xyxy_clamped(src),
                bbox_cxcywh_to_xyxy_clamped(tgt),
                avg_factor=num_boxes))

    def _fgl_targets(self, out: Dict, targets: Sequence[Dict],
                     indices: Sequence[MatchIndices], up: Tensor,
                     reg_scale: Tensor) -> FGLTargets:
        ref = out['ref_points'][self._src_idx(indices)].detach()
        gt = bbox_cxcywh_to_xyxy_clamped(
            self._matched(targets, indices, 'boxes'))
        with torch.no_grad():
            return bbox2distance(ref, gt, self.reg_max, reg_scale, up)

    def _loss_local(self, out: Dict, targets: Sequence[Dict],
                    indices: Sequence[MatchIndices], num_boxes: float,
                    fgl_targets: FGLTargets,
                    ddf_factors: Tuple[Tensor, Tensor]) -> Dict[str, Tensor]:
        """FGL on the matched pairs and, for a student layer, DDF."""
        losses = {}
        if 'pred_corners' not in out:
            return losses
        bins = self.reg_max + 1
        idx = self._src_idx(indices)
        ious = self._aligned_iou(out['pred_boxes'][idx],
                                 self._matched(targets, indices,
                                               'boxes')).detach()
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
        losses = self._loss_vfl(out, targets, cls_indices, num_cls)
        losses.update(self._loss_boxes(out, targets, box_indices, num_box))
        if fgl_targets is not None:
            losses.update(
                self._loss_local(out, targets, box_indices, num_box,
                                 fgl_targets, ddf_factors))
        return losses

    # ------------------------------------------------------------ forward
    def forward(self, outputs: Dict, targets: Sequence[Dict[str, Tensor]]
                ) -> Dict[str, Tensor]:
        """Compute all weighted loss terms (see the class docstring).

        As upstream (which calls the criterion outside ``autocast``), the
        losses are computed in float32 with autocast disabled, so mixed
        precision training only changes the precision of the predictions.

        Returns:
            dict[str, Tensor]: Official term name -> scalar, already
            multiplied by its weight and NaN-cleaned.
        """
        device_type = outputs['pred_logits'].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward(_float32(outputs), _float32(targets))

    def _forward(self, outputs: Dict,
                 targets: Sequence[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        logits = outputs['pred_logits']
        device = logits.device
        bs = logits.shape[0]
        if logits.shape[-1] != self.num_classes:
            raise ValueError(
                f'DFINECriterion: outputs["pred_logits"] has '
                f'{logits.shape[-1]} classes, num_classes={self.num_classes}')
        if len(targets) != bs:
            raise ValueError(f'DFINECriterion: {len(targets)} targets for a '
                             f'batch of {bs} images')
        aux_list = list(outputs.get('aux_outputs', []))
        pre_out = outputs.get('pre_outputs')
        enc_list = list(outputs.get('enc_aux_outputs', []))
        dn_list = list(outputs.get('dn_outputs', []))
        up, reg_scale = outputs['up'], outputs['reg_scale']

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
        num_boxes_go = self._reduce_count(
            sum(len(q) for q, _ in go_indices), device)
        num_boxes = self._reduce_count(
            sum(len(t['labels']) for t in targets), device)

        # DDF balance factors from the GO-LSD matched set (per edge)
        go_mask = torch.zeros(
            logits.shape[:2], dtype=torch.bool, device=device)
        go_mask[self._src_idx(go_indices)] = True
        ddf_factors = ddf_balance_factors(
            go_mask.repeat_interleave(4, dim=-1).reshape(-1), bs,
            self.ddf_ref_batch_size)
        fgl_targets = None
        if 'pred_corners' in outputs:
            fgl_targets = self._fgl_targets(outputs, targets, go_indices, up,
                                            reg_scale)

        losses: Dict[str, Tensor] = {}

        def add(terms: Dict[str, Tensor], suffix: str) -> None:
            for k, v in terms.items():
                losses[k + suffix] = v

        add(
            self._output_losses(outputs, targets, indices, go_indices,
                                num_boxes, num_boxes_go, fgl_targets,
                                ddf_factors), '')
        for i, (out, ind) in enumerate(zip(aux_list, aux_indices)):
            add(
                self._output_losses(out, targets, ind, go_indices, num_boxes,
                                    num_boxes_go, fgl_targets, ddf_factors),
                f'_aux_{i}')
        if pre_out is not None:
            add(
                self._output_losses(pre_out, targets, pre_indices, go_indices,
                                    num_boxes, num_boxes_go, None,
                                    ddf_factors), '_pre')
        for i, (out, ind) in enumerate(zip(enc_list, enc_indices)):
            add(
                self._output_losses(out, enc_targets, ind, go_indices,
                                    num_boxes, num_boxes_go, None,
                                    ddf_factors), f'_enc_{i}')

        dn_indices, fgl_targets_dn = None, None
        if dn_list:
            if 'dn_meta' not in outputs:
                raise KeyError('DFINECriterion: outputs has "dn_outputs" '
                               'but no "dn_meta"')
            dn_meta = outputs['dn_meta']
            dn_indices = dn_match_indices(
                dn_meta, [len(t['labels']) for t in targets], device)
            dn_num_boxes = num_boxes * dn_meta['dn_num_group']
            dn_num_boxes = dn_num_boxes if dn_num_boxes > 0 else 1
            if 'pred_corners' in dn_list[0]:
                fgl_targets_dn = self._fgl_targets(dn_list[0], targets,
                                                   dn_indices, up, reg_scale)
            for i, out in enumerate(dn_list):
                add(
                    self._output_losses(out, targets, dn_indices, dn_indices,
                                        dn_num_boxes, dn_num_boxes,
                                        fgl_targets_dn, ddf_factors),
                    f'_dn_{i}')
            if outputs.get('dn_pre_outputs') is not None:
                add(
                    self._output_losses(outputs['dn_pre_outputs'], targets,
                                        dn_indices, dn_indices, dn_num_boxes,
                                        dn_num_boxes, None, ddf_factors),
                    '_dn_pre')

        self._last_results = dict(
            indices=indices,
            aux_indices=aux_indices,
            pre_indices=pre_indices,
            enc_indices=enc_indices,
            go_indices=go_indices,
            dn_indices=dn_indices,
            num_boxes=num_boxes,
            num_boxes_go=num_boxes_go,
            fgl_targets=fgl_targets,
            fgl_targets_dn=fgl_targets_dn,
            ddf_num_pos=ddf_factors[0],
            ddf_num_neg=ddf_factors[1])
        return {k: torch.nan_to_num(v, nan=0.0) for k, v in losses.items()}

    def last_matching_results(self) -> Dict:
        """Matching state of the last :meth:`forward` call (for tests/debug).

        Returns:
            dict: ``indices`` (last layer), ``aux_indices``, ``pre_indices``,
            ``enc_indices``, ``go_indices``, ``dn_indices`` (each a list over
            images of ``(query_idx, gt_idx)``), ``num_boxes``,
            ``num_boxes_go``, ``fgl_targets`` / ``fgl_targets_dn``
            (``(position, weight_right, weight_left)``, each (4 * pairs,)),
            ``ddf_num_pos``, ``ddf_num_neg``.
        """
        return dict(self._last_results)
