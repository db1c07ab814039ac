"""DINO's decoder with Fine-grained Distribution Refinement (FDR) instead of
box-delta refinement.

mmdet's :class:`~mmdet.models.layers.DinoTransformerDecoder` refines boxes
iteratively in logit space: layer ``i`` predicts a delta ``Δ_i`` (4 values)
and ``ref^{i+1} = sigmoid(Δ_i + logit(ref^i))``.  D-FINE (arXiv 2410.13842,
§3.2) replaces this by FDR: layer ``i`` predicts residual logits of four edge
distributions over ``reg_max + 1`` bins, added to the previous layer's
logits, and the box is decoded from the **fixed initial reference** with the
non-uniform weighting function ``W(n)``::

    ref^0     = decoder input reference (two-stage top-k proposals; noised
                ground truth for the denoising queries), detached
    h_i       = norm(layer_i(q_{i-1}, query_pos(ref^i), ref^i))
    corners_i = reg_branch_i(h_i) + corners_{i-1}        corners_{-1} = 0
    box_i     = FDRBBoxCoder.decode(ref^0, corners_i)    (Eq. 2-3)
    ref^{i+1} = sg(box_i)                                next sampling box

With a pre head (``pre_reg_branch``, D-FINE's ``pre_bbox_head``; the
head's ``pre_refine=True``), the fixed reference is not the decoder input but
its layer-0 delta refinement, as in D-FINE's decoder::

    pre_box   = sigmoid(pre_reg_branch(h_0) + logit(ref^0))  (trained, _pre)
    ref_fix   = sg(pre_box)
    box_i     = FDRBBoxCoder.decode(ref_fix, corners_i)

so FDR's bounded edge offsets are spent around an already refined box;
layer 0 still samples around ``ref^0``.
Without it ``ref_fix = ref^0``.

``corners_{i-1}`` is not detached (as in D-FINE: the gradient of every later
box reaches the earlier branches through the chain of residuals, the FDR
counterpart of DINO's "look forward twice").  With all-zero logits every
edge distribution is uniform, whose expectation under the symmetric ``W(n)``
is 0, so a zero-initialised branch starts exactly at the reference box, as a
zero-initialised delta branch does in DINO.

What is kept from mmdet unchanged: the decoder layers (self-attention,
``MultiScaleDeformableAttention`` cross-attention, FFN, their norms), the
sine embedding of the reference box and ``ref_point_head``, the final
``norm``, the ``valid_ratios`` scaling; so a plain DINO checkpoint loads
into every decoder parameter.  The coder (``reg_max``, ``reg_scale``, ``up``)
is the detection head's (:class:`DINOFDRHead.bbox_coder`), passed in by
:class:`~dfine_mmdet.models.detectors.DINOFDR`; this module holds none.  The
pre-head step and the FDR step are D-FINE's decoder's own functions
(:func:`~dfine_mmdet.models.layers.fdr_decoder.pre_refine`,
:func:`~dfine_mmdet.models.layers.fdr_decoder.fdr_refine`).
"""
from typing import Optional, Tuple

import torch
from mmdet.models.layers import DinoTransformerDecoder
from mmdet.models.layers.transformer.utils import coordinate_to_encoding
from torch import Tensor, nn

from ..task_modules.coders.fdr_coder import FDRBBoxCoder
from .fdr_decoder import fdr_refine, pre_refine


class FDRDinoTransformerDecoder(DinoTransformerDecoder):
    """:class:`DinoTransformerDecoder` whose per-layer box refinement is FDR
    (see the module docstring).  Same constructor and parameters as mmdet's
    (``num_layers``, ``layer_cfg``, ``post_norm_cfg=None``,
    ``return_intermediate=True``), plus:

    Args:
        detach_corners (bool): Stop the gradient of layer ``i``'s box
            losses at ``corners_{i-1}`` (each branch then learns only its
            own residual, like DINO's detached delta refinement).  Default
            False: D-FINE's un-detached accumulation.  An ablation of issue
            17 (docs/fdr_in_detrs.md).
    """

    def __init__(self, *args, detach_corners: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.detach_corners = detach_corners

    def forward(self,
                query: Tensor,
                value: Tensor,
                key_padding_mask: Tensor,
                self_attn_mask: Tensor,
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reg_branches: nn.ModuleList,
                bbox_coder: FDRBBoxCoder,
                pre_reg_branch: Optional[nn.Module] = None,
                **kwargs) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
        """Run the decoder layers with FDR.

        Args:
            query (Tensor): Content queries ``[B, T+Q, D]`` (``T`` denoising
                queries first in training).
            value (Tensor): Encoder memory ``[B, N, D]``.
            key_padding_mask (Tensor): ``[B, N]`` padding mask of the memory.
            self_attn_mask (Tensor | None): ``[T+Q, T+Q]`` denoising mask.
            reference_points (Tensor): ``[B, T+Q, 4]`` initial reference
                boxes, normalised cxcywh (the fixed FDR reference).
            spatial_shapes, level_start_index (Tensor): Level layout of the
                memory, ``[L_f, 2]`` and ``[L_f]``.
            valid_ratios (Tensor): ``[B, L_f, 2]``.
            reg_branches (nn.ModuleList): At least ``num_layers`` branches
                ``D -> 4 (reg_max + 1)`` (the head's; a two-stage head has
                one more, for the encoder, which is not used here).
            bbox_coder (FDRBBoxCoder): The head's coder.
            pre_reg_branch (nn.Module, optional): Layer-0 box-delta head
                ``D -> 4`` (logit space); when given, its refinement of
                ``reference_points`` is the fixed FDR reference.

        Returns:
            tuple:

            - hidden_states ``[L, B, T+Q, D]``: normed layer outputs.
            - references ``[L + 1, B, T+Q, 4]``: the fixed FDR reference
              (detached; the pre box with ``pre_reg_branch``, else
              ``reference_points``), then the FDR box of every layer
              (normalised cxcywh, not clamped).
            - pred_corners ``[L, B, T+Q, 4 (reg_max + 1)]``: accumulated
              corner logits (edge-major l, t, r, b).
            - pre_boxes ``[B, T+Q, 4]`` or None: the pre head's boxes (not
              detached, supervised by the ``_pre`` loss terms); None
              without ``pre_reg_branch``.
        """
        if not self.return_intermediate:
            raise ValueError(f'{type(self).__name__} needs '
                             'return_intermediate=True (every layer is '
                             'supervised)')
        if reference_points.shape[-1] != 4:
            raise ValueError(
                f'{type(self).__name__}: FDR decodes boxes around 4-d '
                f'reference boxes, got reference_points of shape '
                f'{tuple(reference_points.shape)} (DINO is two-stage)')
        if len(reg_branches) < self.num_layers:
            raise ValueError(f'{len(reg_branches)} reg_branches for '
                             f'{self.num_layers} decoder layers')
        ref = reference_points.detach()
        project = bbox_coder.project(device=ref.device).to(ref.dtype)
        ratios = torch.cat([valid_ratios, valid_ratios], -1)[:, None]

        hidden_states, all_corners, boxes = [], [], []
        ref_init = None if pre_reg_branch is not None else ref
        pre_boxes = corners = None
        for lid, layer in enumerate(self.layers):
            ref_input = ref[:, :, None] * ratios
            query_sine_embed = coordinate_to_encoding(
                ref_input[:, :, 0, :], num_feats=query.shape[2])
            query_pos = self.ref_point_head(query_sine_embed)
            query = layer(
                query,
                query_pos=query_pos,
                value=value,
                key_padding_mask=key_padding_mask,
                self_attn_mask=self_attn_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=ref_input,
                **kwargs)
            hidden = self.norm(query)
            if ref_init is None:  # layer 0 with a pre head
                pre_boxes, ref_init = pre_refine(pre_reg_branch, hidden, ref)
            prev = corners
            if prev is not None and self.detach_corners:
                prev = prev.detach()
            corners, box = fdr_refine(reg_branches[lid], hidden, prev,
                                      ref_init, bbox_coder, project)
            hidden_states.append(hidden)
            boxes.append(box)
            all_corners.append(corners)
            ref = box.detach()
        return (torch.stack(hidden_states), torch.stack([ref_init] + boxes),
                torch.stack(all_corners), pre_boxes)
