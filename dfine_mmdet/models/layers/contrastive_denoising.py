"""Contrastive denoising (CDN) query builder used by D-FINE in training.

D-FINE (arXiv 2410.13842) trains with DINO-style contrastive denoising as in
RT-DETR: noised copies of the ground truth are decoded next to the 300
matching queries and must be reconstructed (positives) or rejected
(negatives).  With ``m`` = the largest GT count in the batch:

* ``num_group = max(1, num_denoising // m)`` groups, each ``m`` positive and
  ``m`` negative slots (images with fewer GT are padded with the padding
  class ``C`` and an all-zero box), ``T_dn = 2 * m * num_group`` queries;
* label noise: a real GT slot takes a uniformly random class with
  probability ``label_noise_ratio * 0.5``;
* box noise (``xyxy``): every coordinate moves by ``sign * u * (w/2 or h/2)``
  with ``u ~ U[0, 1)`` for positives and ``U[1, 2)`` for negatives; clipped
  to ``[0, 1]``, back to ``cxcywh``, ``inverse_sigmoid``;
* content query = ``label_embedding(noised class)``, an
  ``Embedding(C + 1, D, padding_idx=C)`` (official key
  ``decoder.denoising_class_embed.weight``);
* self-attention mask ``[T_dn + Q, T_dn + Q]`` (True = blocked): matching
  queries cannot see denoising queries, and each denoising group sees only
  itself.

The random draws are the official ones in the official order from the
global torch RNG (``rand`` [B,T] label mask, ``randint`` [B,T] new labels,
``randint`` [B,T,4] signs, ``rand`` [B,T,4] magnitudes), so the same seed
gives bit-identical noised boxes.

mmdet's ``CdnQueryGenerator`` (DINO) is not reused: it draws its noise
differently (label noise ratio, ``rand * 2 - 1`` box noise in ``cxcywh``
space), lays the mask out differently and keeps its own embedding, so
neither the numbers nor the official checkpoints' layout would match.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.models.layers.transformer.utils import inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor

from ..utils import bbox_cxcywh_to_xyxy_clamped

DNOutput = Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor],
                 Optional[Dict]]


@MODELS.register_module()
class DFINEContrastiveDenoising(nn.Module):
    """Builds D-FINE's contrastive denoising queries, mask and meta.

    Args:
        num_classes (int): Number of object classes ``C``.
        embed_dims (int): Decoder width ``D``.
        num_denoising (int): Upper bound of denoising queries per image
            (official 100). ``<= 0`` disables denoising.
        label_noise_ratio (float): Label flip probability is half of it.
            Default 0.5.
        box_noise_scale (float): Box noise scale (the official decoder always
            passes 1.0). Default 1.0.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int,
                 num_denoising: int = 100,
                 label_noise_ratio: float = 0.5,
                 box_noise_scale: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.label_embedding = nn.Embedding(
            num_classes + 1, embed_dims, padding_idx=num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Standard normal on the class rows, zeros on the padding row."""
        with torch.no_grad():
            nn.init.normal_(self.label_embedding.weight[:-1])
            self.label_embedding.weight[-1].zero_()

    @staticmethod
    def build_attn_mask(max_gt: int, num_group: int, num_queries: int,
                        device: torch.device) -> Tensor:
        """Self-attention mask, True = blocked.

        Args:
            max_gt (int): Slots per half group ``m``.
            num_group (int): Number of denoising groups.
            num_queries (int): Number of matching queries ``Q``.
            device: Device of the mask.

        Returns:
            Tensor: Bool ``[T_dn + Q, T_dn + Q]`` with
            ``T_dn = 2 * m * num_group``; rows/cols ``[0, T_dn)`` are the
            denoising queries (group-major), then the matching queries.
        """
        num_dn = 2 * max_gt * num_group
        size = num_dn + num_queries
        mask = torch.zeros(size, size, dtype=torch.bool, device=device)
        mask[num_dn:, :num_dn] = True
        group = torch.arange(num_dn, device=device) // (2 * max_gt)
        mask[:num_dn, :num_dn] = group[:, None] != group[None, :]
        return mask

    def forward(self, gt_labels: Sequence[Tensor],
                gt_boxes_cxcywh: Sequence[Tensor],
                num_queries: int) -> DNOutput:
        """Build the denoising part of the decoder input.

        Args:
            gt_labels (list[Tensor]): Per image (n_i,) int64 labels in
                ``[0, C)``.
            gt_boxes_cxcywh (list[Tensor]): Per image (n_i, 4) boxes,
                normalised ``cxcywh``.
            num_queries (int): Number of matching queries ``Q``.

        Returns:
            tuple: ``(dn_query, dn_ref_unact, attn_mask, dn_meta)``:

            - ``dn_query`` (Tensor | None): (B, T_dn, D) content queries.
            - ``dn_ref_unact`` (Tensor | None): (B, T_dn, 4) noised boxes in
              logit space (``inverse_sigmoid`` of ``cxcywh``).
            - ``attn_mask`` (Tensor | None): bool (T_dn + Q, T_dn + Q).
            - ``dn_meta`` (dict | None): ``dn_positive_idx`` (list of
              per-image int64 positions of the positive slots, group-major,
              or None when the batch has no GT), ``dn_num_group`` (int, 0
              without GT), ``dn_num_split`` ``[T_dn, Q]``.

            Without any GT in the batch: ``(None, None, None,
            dict(dn_positive_idx=None, dn_num_group=0,
            dn_num_split=[0, Q]))``. With ``num_denoising <= 0``: all None.
        """
        if self.num_denoising <= 0:
            return None, None, None, None
        if len(gt_labels) != len(gt_boxes_cxcywh):
            raise ValueError(
                f'DFINEContrastiveDenoising: {len(gt_labels)} label tensors '
                f'but {len(gt_boxes_cxcywh)} box tensors')
        num_gts = [len(labels) for labels in gt_labels]
        max_gt = max(num_gts) if num_gts else 0
        if max_gt == 0:
            return None, None, None, dict(
                dn_positive_idx=None,
                dn_num_group=0,
                dn_num_split=[0, num_queries])

        device = self.label_embedding.weight.device
        bs = len(num_gts)
        num_group = max(1, self.num_denoising // max_gt)

        # padded GT: class C and zero box in the padding slots
        query_class = torch.full([bs, max_gt],
                                 self.num_classes,
                                 dtype=torch.int32,
                                 device=device)
        query_bbox = torch.zeros([bs, max_gt, 4], device=device)
        pad_mask = torch.zeros([bs, max_gt], dtype=torch.bool, device=device)
        for i, num_gt in enumerate(num_gts):
            if num_gt > 0:
                query_class[i, :num_gt] = gt_labels[i].to(device)
                query_bbox[i, :num_gt] = gt_boxes_cxcywh[i].to(device)
                pad_mask[i, :num_gt] = True

        # tile to num_group groups of [m positives, m negatives]
        query_class = query_class.tile([1, 2 * num_group])
        query_bbox = query_bbox.tile([1, 2 * num_group, 1])
        pad_mask = pad_mask.tile([1, 2 * num_group])
        negative = torch.zeros([bs, 2 * max_gt, 1], device=device)
        negative[:, max_gt:] = 1
        negative = negative.tile([1, num_group, 1])
        # positive slot positions (group-major): g * 2m + j, j < n_i -- the
        # column indices of ``nonzero((1 - negative) * pad_mask)`` (official)
        # computed from the GT counts, without a data-dependent op (no host
        # sync, no graph break under torch.compile)
        group_start = torch.arange(
            num_group, dtype=torch.int64, device=device) * (2 * max_gt)
        dn_positive_idx = [(group_start[:, None] + torch.arange(
            n, dtype=torch.int64, device=device)[None, :]).flatten()
                           for n in num_gts]
        num_dn = 2 * max_gt * num_group

        if self.label_noise_ratio > 0:
            flip = torch.rand_like(
                query_class, dtype=torch.float) < (
                    self.label_noise_ratio * 0.5)
            new_label = torch.randint_like(
                flip, 0, self.num_classes, dtype=query_class.dtype)
            query_class = torch.where(flip & pad_mask, new_label, query_class)

        if self.box_noise_scale > 0:
            known_bbox = bbox_cxcywh_to_xyxy_clamped(query_bbox)
            diff = torch.tile(query_bbox[..., 2:] * 0.5,
                              [1, 1, 2]) * self.box_noise_scale
            rand_sign = torch.randint_like(query_bbox, 0, 2) * 2.0 - 1.0
            rand_part = torch.rand_like(query_bbox)
            rand_part = (rand_part + 1.0) * negative + rand_part * (1 -
                                                                    negative)
            known_bbox = known_bbox + rand_sign * rand_part * diff
            known_bbox = torch.clip(known_bbox, min=0.0, max=1.0)
            query_bbox = bbox_xyxy_to_cxcywh(known_bbox)
            query_bbox = torch.where(query_bbox < 0, -query_bbox, query_bbox)
        dn_ref_unact = inverse_sigmoid(query_bbox)

        dn_query = self.label_embedding(query_class)
        attn_mask = self.build_attn_mask(max_gt, num_group, num_queries,
                                         device)
        dn_meta = dict(
            dn_positive_idx=dn_positive_idx,
            dn_num_group=num_group,
            dn_num_split=[num_dn, num_queries])
        return dn_query, dn_ref_unact, attn_mask, dn_meta


def dn_match_indices(
        dn_meta: Optional[Dict],
        num_gts: Sequence[int],
        device: Optional[torch.device] = None) -> List[Tuple[Tensor, Tensor]]:
    """Fixed denoising matches: positive slot ``<->`` its GT, every group.

    Args:
        dn_meta (dict | None): As returned by
            :class:`DFINEContrastiveDenoising`.
        num_gts (list[int]): GT count per image.
        device: Device of the returned indices.

    Returns:
        list[tuple[Tensor, Tensor]]: Per image ``(dn_query_idx, gt_idx)``
        int64; ``gt_idx`` is ``arange(n)`` tiled ``dn_num_group`` times.
    """
    results = []
    for i, num_gt in enumerate(num_gts):
        if num_gt > 0:
            positive_idx = dn_meta['dn_positive_idx'][i]
            gt_idx = torch.arange(
                num_gt, dtype=torch.int64,
                device=positive_idx.device).tile(dn_meta['dn_num_group'])
            if len(positive_idx) != len(gt_idx):
                raise ValueError(
                    f'dn_meta["dn_positive_idx"][{i}] has '
                    f'{len(positive_idx)} entries, expected {num_gt} GT x '
                    f'{dn_meta["dn_num_group"]} groups = {len(gt_idx)}')
            pair = (positive_idx.long(), gt_idx)
        else:
            empty = torch.zeros(0, dtype=torch.int64)
            pair = (empty, empty.clone())
        if device is not None:
            pair = (pair[0].to(device), pair[1].to(device))
        results.append(pair)
    return results
