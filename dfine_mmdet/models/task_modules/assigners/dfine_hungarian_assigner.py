"""One-to-one Hungarian matching with D-FINE's official matching cost.

D-FINE (arXiv 2410.13842) keeps the DETR set-prediction recipe: every output
(last decoder layer, each auxiliary layer, the layer-0 ``pre`` head and the
encoder top-k proposals) is matched one-to-one to the ground truth by
minimising, per image, ::

    C = w_bbox * L1(cxcywh) + w_class * focal_cost - w_giou * GIoU(xyxy)

with the focal matching cost of Deformable-DETR (``alpha=0.25``,
``gamma=2``, ``eps=1e-8`` inside the logarithms), ``NaN`` costs replaced by
``1.0`` and ``scipy.optimize.linear_sum_assignment`` solved per image.

Why not mmdet's ``HungarianAssigner`` + match costs: they are close but not
numerically identical.  ``BBoxL1Cost`` expects pixel ``xyxy`` boxes and
converts/normalises them (a ``cxcywh -> xyxy -> cxcywh`` round trip changes
the last bits), ``FocalLossCost`` multiplies its factors in another order
(and defaults to ``eps=1e-12``), the weighted costs are summed with
``torch.stack(...).sum(0)`` instead of left to right, and ``NaN`` costs make
scipy raise instead of being mapped to ``1.0``.  Any of these can flip a
near-tied assignment, so this assigner evaluates the cost with the official
element-wise arithmetic.  The pairwise GIoU itself is mmdet's
:func:`~mmdet.structures.bbox.bbox_overlaps` (same formula; its ``eps=1e-6``
floor on union/enclosing area only matters when both boxes are smaller than
1e-6 of the image area, where the official code produces ``NaN``).

Boxes are normalised ``(cx, cy, w, h)``; widths/heights are clamped at 0
before the conversion to ``(x1, y1, x2, y2)`` as in the official
``box_cxcywh_to_xyxy`` (predicted boxes can have negative extents).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.task_modules.assigners.assign_result import AssignResult
from mmdet.models.task_modules.assigners.base_assigner import BaseAssigner
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_overlaps
from mmengine.structures import InstanceData
from torch import Tensor

from ...utils import MatchIndices, bbox_cxcywh_to_xyxy_clamped

try:
    from scipy.optimize import linear_sum_assignment
except ImportError:  # pragma: no cover - scipy is an mmdet requirement
    linear_sum_assignment = None


@TASK_UTILS.register_module()
class DFINEHungarianAssigner(BaseAssigner):
    """Hungarian assigner with D-FINE's matching cost (see module docstring).

    Args:
        cost_class (float): Weight of the focal classification cost.
            Default 2.
        cost_bbox (float): Weight of the L1 cost on normalised ``cxcywh``.
            Default 5.
        cost_giou (float): Weight of the negative-GIoU cost. Default 2.
        alpha (float): Focal cost alpha. Default 0.25.
        gamma (float): Focal cost gamma. Default 2.
        eps (float): Added inside the focal-cost logarithms. Default 1e-8.
        nan_cost (float): Value that replaces ``NaN`` costs. Default 1.0.
    """

    def __init__(self,
                 cost_class: float = 2.0,
                 cost_bbox: float = 5.0,
                 cost_giou: float = 2.0,
                 alpha: float = 0.25,
                 gamma: float = 2.0,
                 eps: float = 1e-8,
                 nan_cost: float = 1.0) -> None:
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError('DFINEHungarianAssigner: all cost weights are 0')
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps
        self.nan_cost = nan_cost

    @torch.no_grad()
    def cost_matrix(self, pred_logits: Tensor, pred_boxes: Tensor,
                    gt_labels: Tensor, gt_boxes: Tensor) -> Tensor:
        """Matching cost between N predictions and M ground-truth boxes.

        Args:
            pred_logits (Tensor): Class logits (N, C) (before sigmoid).
            pred_boxes (Tensor): Boxes (N, 4), normalised ``cxcywh``.
            gt_labels (Tensor): Labels (M,), int64 in ``[0, C)``.
            gt_boxes (Tensor): Boxes (M, 4), normalised ``cxcywh``.

        Returns:
            Tensor: Cost (N, M), ``NaN`` replaced by ``nan_cost``.
        """
        prob = pred_logits.sigmoid()[:, gt_labels]
        neg_cost = (1 - self.alpha) * (prob**self.gamma) * (
            -(1 - prob + self.eps).log())
        pos_cost = self.alpha * (
            (1 - prob)**self.gamma) * (-(prob + self.eps).log())
        cost_class = pos_cost - neg_cost
        cost_bbox = torch.cdist(pred_boxes, gt_boxes, p=1)
        cost_giou = -bbox_overlaps(
            bbox_cxcywh_to_xyxy_clamped(pred_boxes),
            bbox_cxcywh_to_xyxy_clamped(gt_boxes),
            mode='giou')
        cost = (
            self.cost_bbox * cost_bbox + self.cost_class * cost_class +
            self.cost_giou * cost_giou)
        return torch.nan_to_num(cost, nan=self.nan_cost)

    @staticmethod
    def _solve(cost: Tensor) -> Tuple[Tensor, Tensor]:
        if linear_sum_assignment is None:  # pragma: no cover
            raise ImportError('DFINEHungarianAssigner needs scipy '
                              '(pip install scipy)')
        rows, cols = linear_sum_assignment(cost)
        return (torch.as_tensor(rows, dtype=torch.int64),
                torch.as_tensor(cols, dtype=torch.int64))

    @torch.no_grad()
    def match(self, pred_logits: Tensor, pred_boxes: Tensor,
              targets: Sequence[Dict[str, Tensor]]) -> List[MatchIndices]:
        """Batched matching (what the D-FINE head's loss uses).

        The cost of all ``B*Q`` predictions against all ground truths of the
        batch is built at once and moved to the CPU in one transfer, then
        solved image by image, as in the official matcher.

        Args:
            pred_logits (Tensor): (B, Q, C) class logits.
            pred_boxes (Tensor): (B, Q, 4) normalised ``cxcywh``.
            targets (list[dict]): Per image ``labels`` (n,) int64 and
                ``boxes`` (n, 4) normalised ``cxcywh``.

        Returns:
            list[tuple[Tensor, Tensor]]: Per image ``(query_idx, gt_idx)``,
            int64 on the CPU, query indices ascending.
        """
        bs, num_queries = pred_logits.shape[:2]
        if len(targets) != bs:
            raise ValueError(f'DFINEHungarianAssigner.match: {len(targets)} '
                             f'targets for a batch of {bs} predictions')
        sizes = [len(t['boxes']) for t in targets]
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [(empty, empty.clone()) for _ in range(bs)]
        gt_labels = torch.cat([t['labels'] for t in targets])
        gt_boxes = torch.cat([t['boxes'] for t in targets])
        cost = self.cost_matrix(
            pred_logits.flatten(0, 1), pred_boxes.flatten(0, 1), gt_labels,
            gt_boxes).view(bs, num_queries, -1).cpu()
        return [self._solve(c[i]) for i, c in enumerate(cost.split(sizes, -1))]

    @torch.no_grad()
    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               img_meta: Optional[dict] = None,
               **kwargs) -> AssignResult:
        """Single-image assignment in mmdet's :class:`BaseAssigner` API.

        Args:
            pred_instances (:obj:`InstanceData`): ``scores`` (Q, C) class
                logits and ``bboxes`` (Q, 4) normalised ``cxcywh``.
            gt_instances (:obj:`InstanceData`): ``labels`` (M,) and
                ``bboxes`` (M, 4) normalised ``cxcywh``.
            img_meta (dict, optional): Unused.

        Returns:
            :obj:`AssignResult`: ``gt_inds`` is 0 for background and
            ``gt index + 1`` for matched queries.
        """
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        device = gt_instances.labels.device
        gt_inds = torch.zeros(num_preds, dtype=torch.long, device=device)
        labels = torch.full((num_preds, ), -1, dtype=torch.long, device=device)
        if num_gts > 0 and num_preds > 0:
            cost = self.cost_matrix(pred_instances.scores,
                                    pred_instances.bboxes, gt_instances.labels,
                                    gt_instances.bboxes).cpu()
            rows, cols = self._solve(cost)
            rows, cols = rows.to(device), cols.to(device)
            gt_inds[rows] = cols + 1
            labels[rows] = gt_instances.labels[cols]
        return AssignResult(
            num_gts=num_gts, gt_inds=gt_inds, max_overlaps=None, labels=labels)
