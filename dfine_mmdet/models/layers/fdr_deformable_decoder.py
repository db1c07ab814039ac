"""Deformable DETR's decoder with Fine-grained Distribution Refinement (FDR)
instead of box-delta refinement.

mmdet's :class:`~mmdet.models.layers.DeformableDetrTransformerDecoder` with
box refinement (``with_box_refine=True``) refines boxes in logit space:
``ref^{i+1} = sg(sigmoid(reg_branch_i(q_i) + logit(ref^i)))``.  With FDR
(D-FINE, arXiv 2410.13842, §3.2) layer ``i`` predicts residual logits of four
edge distributions over ``reg_max + 1`` bins, added to the previous layer's,
decoded around the **fixed initial reference** with the head's
``FDRBBoxCoder``::

    ref^0     = decoder input reference (two-stage top-k proposal), detached
    q_i       = layer_i(q_{i-1}, query_pos, ref^i)      (query_pos fixed, as
                                                         in Deformable DETR)
    corners_i = reg_branch_i(q_i) + corners_{i-1}        corners_{-1} = 0
    box_i     = FDRBBoxCoder.decode(ref^0, corners_i)    (Eq. 2-3)
    ref^{i+1} = sg(box_i)                                next sampling box

The per-layer step is :func:`~dfine_mmdet.models.layers.fdr_decoder.
fdr_refine`, the one FDR step of D-FINE's and the DINO + FDR decoders; the
two mmdet-based decoders differ in what Deformable DETR
and DINO differ in: DINO recomputes ``query_pos`` from the sine embedding of
``ref^i`` every layer and norms every layer's output, Deformable DETR keeps
the two-stage ``query_pos`` and has no final norm).

Everything else is mmdet's (the layers, their parameters and names), so a
plain mmdet Deformable DETR checkpoint loads into every decoder parameter.
"""
from typing import Tuple

import torch
from mmdet.models.layers import DeformableDetrTransformerDecoder
from torch import Tensor, nn

from ..task_modules.coders.fdr_coder import FDRBBoxCoder
from .fdr_decoder import fdr_refine


class FDRDeformableDetrTransformerDecoder(DeformableDetrTransformerDecoder):
    """:class:`DeformableDetrTransformerDecoder` whose box refinement is FDR
    (see the module docstring).  Same constructor and parameters as mmdet's
    (``num_layers``, ``layer_cfg``, ``return_intermediate=True``)."""

    def forward(self, query: Tensor, query_pos: Tensor, value: Tensor,
                key_padding_mask: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor,
                valid_ratios: Tensor, reg_branches: nn.ModuleList,
                bbox_coder: FDRBBoxCoder,
                **kwargs) -> Tuple[Tensor, Tensor, Tensor]:
        """Run the decoder layers with FDR.

        Args:
            query (Tensor): Content queries ``[B, Q, D]``.
            query_pos (Tensor): Positional queries ``[B, Q, D]`` (two-stage
                proposal embedding; the same for every layer).
            value (Tensor): Encoder memory ``[B, N, D]``.
            key_padding_mask (Tensor): ``[B, N]`` padding mask of the memory.
            reference_points (Tensor): ``[B, Q, 4]`` initial reference boxes,
                normalised cxcywh (the fixed FDR reference).
            spatial_shapes, level_start_index (Tensor): Level layout of the
                memory, ``[L_f, 2]`` and ``[L_f]``.
            valid_ratios (Tensor): ``[B, L_f, 2]``.
            reg_branches (nn.ModuleList): At least ``num_layers`` branches
                ``D -> 4 (reg_max + 1)`` (the head's).
            bbox_coder (FDRBBoxCoder): The head's coder.

        Returns:
            tuple:

            - hidden_states ``[L, B, Q, D]``: layer outputs.
            - references ``[L + 1, B, Q, 4]``: the fixed FDR reference
              (detached), then the FDR box of every layer (not detached, not
              clamped).
            - pred_corners ``[L, B, Q, 4 (reg_max + 1)]``: accumulated corner
              logits (edge-major l, t, r, b).
        """
        if not self.return_intermediate:
            raise ValueError(f'{type(self).__name__} needs '
                             'return_intermediate=True (every layer is '
                             'supervised)')
        if reference_points.shape[-1] != 4:
            raise ValueError(
                f'{type(self).__name__}: FDR decodes boxes around 4-d '
                f'reference boxes, got reference_points of shape '
                f'{tuple(reference_points.shape)} (use as_two_stage=True)')
        if len(reg_branches) < self.num_layers:
            raise ValueError(f'{len(reg_branches)} reg_branches for '
                             f'{self.num_layers} decoder layers')
        ref_init = reference_points.detach()
        ref = ref_init
        project = bbox_coder.project(device=ref.device).to(ref.dtype)
        ratios = torch.cat([valid_ratios, valid_ratios], -1)[:, None]
        hidden_states, corners, boxes = [], [], []
        corners_prev = None
        for lid, layer in enumerate(self.layers):
            query = layer(
                query,
                query_pos=query_pos,
                value=value,
                key_padding_mask=key_padding_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=ref[:, :, None] * ratios,
                **kwargs)
            corners_prev, box = fdr_refine(reg_branches[lid], query,
                                           corners_prev, ref_init, bbox_coder,
                                           project)
            hidden_states.append(query)
            boxes.append(box)
            corners.append(corners_prev)
            ref = box.detach()
        return (torch.stack(hidden_states), torch.stack([ref_init] + boxes),
                torch.stack(corners))
