"""D-FINE decoder: decoder layer and the Fine-grained Distribution Refinement
(FDR) loop.

D-FINE (arXiv 2410.13842, §3.2) replaces the box-delta regression of DETR
decoders by FDR.  Every decoder layer ``i`` predicts, for each query, four
edge distributions over ``reg_max + 1`` bins (132 "corner" logits) that are
**refined residually** from layer to layer and decoded relative to a
reference box that is fixed after the first layer::

    ref^0      = sigmoid(ref_unact)                        query selection
    out_0      = layer_0(query, ref^0)
    b_init     = sigmoid(pre_head(out_0) + logit(ref^0))   detached ->
                                                           fixed reference
    corners_i  = reg_branch_i(out_i + sg(out_{i-1})) + corners_{i-1}
                                                           (Eq. 5, residual)
    d_i        = sum_n softmax(corners_i)_n * W(n)         (Eq. 3, integral)
    box_i      = distance2bbox(b_init, d_i, c)             (Eq. 2)
    ref^{i+1}  = sg(box_i)                                 next layer's
                                                           sampling box

``sg`` is stop-gradient, ``W(n)`` the non-uniform weighting function (Eq. 4)
computed from the ``up`` (``a``) and ``reg_scale`` (``c``) buffers at every
forward with the official float32 recipe.  ``W(n)``, the integral and the box
decoding are the FDR coder's (:class:`FDRBBoxCoder`); in a ``DFINE`` model the
decoder uses the head's coder object (``bbox_head.bbox_coder``), the one place
where ``reg_max`` / ``reg_scale`` / ``up`` are configured.  The buffers are
the checkpoint form of the coder's ``up`` / ``reg_scale`` (official state
dicts hold them): they are made from the coder, and a loaded checkpoint's
values are written back into the coder, so the decoder and the loss (which
reads the coder) always use the same numbers.  The class logits
(``cls_branch_i + LQE_i``) are computed by
:class:`~dfine_mmdet.models.dense_heads.DFINEHead` from the hidden states
returned here.

The pre-head step (:func:`pre_refine`) and one FDR step (:func:`fdr_refine`:
residual corners, then decode around the fixed reference) are written once
here; :class:`~dfine_mmdet.models.layers.FDRDinoTransformerDecoder` (DINO's
decoder with FDR) runs the same two functions.

Activations (DEIM's ``DFINETransformer(activation=..., mlp_act=...)``):
``activation`` is the FFN activation of every decoder layer (and, in DEIM,
of the LQE MLPs, which the head builds), ``mlp_act`` that of
``query_pos_head`` (and of the head's box / corner MLPs).  Both default to
``'relu'``, D-FINE's.

Written for the plugin: mmdet's ``DinoTransformerDecoder`` refines box deltas
with per-layer references and has no FDR, no gate and no pre-head, so it
cannot be reused.  Parameter names inside the layers follow the official
checkpoints (``self_attn``, ``norm1``, ``cross_attn``, ``gateway``,
``linear1``, ``linear2``, ``norm3``).
"""
import logging
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import TASK_UTILS
from mmengine.logging import print_log
from torch import Tensor, nn

from ..task_modules.coders.fdr_coder import FDRBBoxCoder
from ..utils import MLP, Number, SpatialShapes, activation_layer
from .gate import Gate
from .ms_deform_attn import MSDeformableAttention


def pre_refine(pre_reg_branch: nn.Module, hidden: Tensor,
               ref: Tensor) -> Tuple[Tensor, Tensor]:
    """D-FINE's pre head: layer 0 refines its (detached) sampling boxes
    once more in logit space; the result, detached, is the fixed FDR
    reference of every layer.

    Args:
        pre_reg_branch (nn.Module): ``D -> 4`` delta head.
        hidden (Tensor): ``[B, Q, D]`` layer-0 output.
        ref (Tensor): ``[B, Q, 4]`` layer-0 reference boxes (cxcywh).

    Returns:
        tuple[Tensor]: ``pre_boxes`` ``[B, Q, 4]`` (trained by the ``_pre``
        terms) and the fixed reference ``pre_boxes.detach()``.
    """
    pre_boxes = F.sigmoid(pre_reg_branch(hidden) + inverse_sigmoid(ref))
    return pre_boxes, pre_boxes.detach()


def fdr_refine(reg_branch: nn.Module,
               feat: Tensor,
               corners_prev: Optional[Tensor],
               ref_init: Tensor,
               bbox_coder: FDRBBoxCoder,
               project: Tensor,
               reg_scale: Optional[Number] = None) -> Tuple[Tensor, Tensor]:
    """One FDR refinement step (paper Eq. 5, then Eq. 2-3).

    ``corners = reg_branch(feat) + corners_prev`` (residual edge logits;
    ``corners_prev`` is not detached) decoded by the coder around the fixed
    reference.

    Args:
        reg_branch (nn.Module): ``D -> 4 (reg_max + 1)`` corner head.
        feat (Tensor): ``[B, Q, D]`` its input.
        corners_prev (Tensor | None): ``[B, Q, 4 (reg_max + 1)]`` previous
            layer's corners (None for the first layer).
        ref_init (Tensor): ``[B, Q, 4]`` fixed reference (cxcywh).
        bbox_coder (FDRBBoxCoder): The head's coder.
        project (Tensor): ``W(n)`` ``[reg_max + 1]``.
        reg_scale (Tensor, optional): ``c`` (default: the coder's).

    Returns:
        tuple[Tensor]: ``corners`` ``[B, Q, 4 (reg_max + 1)]`` and the box
        ``[B, Q, 4]`` normalised cxcywh.
    """
    corners = reg_branch(feat)
    if corners_prev is not None:
        corners = corners + corners_prev
    return corners, bbox_coder.decode(
        ref_init, corners, reg_scale=reg_scale, project=project)


class DFINETransformerDecoderLayer(nn.Module):
    """One D-FINE decoder layer (post-norm).

    ``self-attn -> add & LayerNorm -> deformable cross-attn -> Gate -> FFN
    -> add, clamp to the float16 range, LayerNorm``.

    Args:
        embed_dims (int): Width ``D``. Default 256.
        num_heads (int): Heads of both attentions. Default 8.
        feedforward_channels (int): FFN hidden width. Default 1024.
        dropout (float): Dropout of attention and FFN (0 in D-FINE).
        num_levels (int): Feature levels of the memory. Default 3.
        num_points (int | list[int]): Deformable sampling points per level.
            Default 4.
        activation (str): FFN activation (set from the decoder's
            ``activation``). Default 'relu'.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 feedforward_channels: int = 1024,
                 dropout: float = 0.0,
                 num_levels: int = 3,
                 num_points: Union[int, List[int]] = 4,
                 activation: str = 'relu') -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.self_attn = nn.MultiheadAttention(
            embed_dims, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.cross_attn = MSDeformableAttention(embed_dims, num_heads,
                                                num_levels, num_points)
        self.dropout2 = nn.Dropout(dropout)
        self.gateway = Gate(embed_dims)
        self.linear1 = nn.Linear(embed_dims, feedforward_channels)
        self.activation = activation_layer(
            activation, 'decoder.activation', inplace=True)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(feedforward_channels, embed_dims)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform FFN weights (official init)."""
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(self,
                query: Tensor,
                reference_boxes: Tensor,
                value: List[Tensor],
                spatial_shapes: SpatialShapes,
                attn_mask: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            query (Tensor): Content queries ``[B, Q, D]``.
            reference_boxes (Tensor): ``[B, Q, 1, 4]`` normalised cxcywh.
            value (list[Tensor]): Per-level value maps from
                :meth:`MSDeformableAttention.split_value`.
            spatial_shapes: ``[(H_l, W_l)]``.
            attn_mask (Tensor, optional): ``[Q, Q]`` bool, True = blocked
                (the denoising mask).
            query_pos (Tensor, optional): ``[B, Q, D]`` positional embedding.

        Returns:
            Tensor: ``[B, Q, D]``.
        """
        q = k = query if query_pos is None else query + query_pos
        # Inference: need_weights=True keeps PyTorch's explicit-softmax path
        # (the official model's numerics and exportable graph).  Training:
        # the weights are never used and need_weights=False runs the fused
        # scaled_dot_product_attention (about 2x faster forward + backward on
        # CPU, results within ~2e-7: summation order only; docs/profiling.md).
        attn_out, _ = self.self_attn(
            q,
            k,
            value=query,
            attn_mask=attn_mask,
            need_weights=not self.training)
        query = self.norm1(query + self.dropout1(attn_out))

        cross_in = query if query_pos is None else query + query_pos
        cross_out = self.cross_attn(cross_in, reference_boxes, value,
                                    spatial_shapes)
        query = self.gateway(query, self.dropout2(cross_out))

        ffn_out = self.linear2(
            self.dropout3(self.activation(self.linear1(query))))
        query = query + self.dropout4(ffn_out)
        return self.norm3(query.clamp(min=-65504, max=65504))


class DFINETransformerDecoder(nn.Module):
    """FDR decoder loop of D-FINE (paper §3.2, Eq. 2-5).

    The prediction branches live in the head (mmdet convention, like DINO's
    ``reg_branches``) and are passed to :meth:`forward`.

    Args:
        num_layers (int): Number of decoder layers ``L``.
        layer_cfg (dict): Keyword arguments of
            :class:`DFINETransformerDecoderLayer` (its ``activation`` is
            this decoder's).
        bbox_coder (dict | FDRBBoxCoder): The FDR coder (an object is used
            as is and shared: :class:`DFINE` passes the head's).  Its
            ``reg_max`` is the bin count, its ``reg_scale`` (``c``) and ``up``
            (``a``) initialise the ``reg_scale`` / ``up`` buffers
            (``reg_scale`` int64 when integral, as in official checkpoints).
        eval_idx (int): Index of the layer whose output is used at inference
            (negative counts from the end); at inference the loop stops after
            it. Default -1.
        activation (str): FFN activation of the layers (DEIM's
            ``activation``; the head's LQE uses it too). Default 'relu'.
        mlp_act (str): Activation of ``query_pos_head`` (DEIM's ``mlp_act``;
            the head's box / corner MLPs use it too). Default 'relu'.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 bbox_coder: Union[dict, FDRBBoxCoder],
                 eval_idx: int = -1,
                 activation: str = 'relu',
                 mlp_act: str = 'relu') -> None:
        super().__init__()
        if isinstance(bbox_coder, dict):
            bbox_coder = TASK_UTILS.build(bbox_coder)
        self.bbox_coder = bbox_coder
        self.num_layers = num_layers
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx
        if not 0 <= self.eval_idx < num_layers:
            raise ValueError(f'eval_idx={eval_idx} is out of range for '
                             f'{num_layers} decoder layers')
        if layer_cfg.get('activation', activation) != activation:
            raise ValueError(
                f'decoder.layer_cfg.activation={layer_cfg["activation"]!r} '
                f'but decoder.activation={activation!r}; set only '
                'decoder.activation')
        layer_cfg = dict(layer_cfg, activation=activation)
        self.layers = nn.ModuleList([
            DFINETransformerDecoderLayer(**layer_cfg)
            for _ in range(num_layers)
        ])
        self.embed_dims = self.layers[0].embed_dims
        # positional embedding of the current reference box (4 -> 2D -> D)
        self.query_pos_head = MLP(
            4, 2 * self.embed_dims, self.embed_dims, 2, act=mlp_act)
        # W(n) hyper-parameters in checkpoint form. The official model
        # registers each as a non-trainable Parameter under two names
        # (decoder.up and decoder.decoder.up); here each is one buffer. As
        # officially, `up` is float32 (averaged by the EMA) and an integral
        # `reg_scale` is int64: the FDR arithmetic then follows the official
        # int64 -> float32 promotions bit for bit and the EMA
        # (floating-point entries only) leaves it untouched. A non-integral
        # reg_scale is stored as float32.
        up, reg_scale = bbox_coder.up, bbox_coder.reg_scale
        self.register_buffer('up', torch.tensor([float(up)]))
        if float(reg_scale) == int(reg_scale):
            reg_scale_t = torch.tensor([int(reg_scale)], dtype=torch.int64)
        else:
            reg_scale_t = torch.tensor([float(reg_scale)])
        self.register_buffer('reg_scale', reg_scale_t)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform ``query_pos_head`` weights (official init)."""
        for layer in self.query_pos_head.layers:
            nn.init.xavier_uniform_(layer.weight)

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        """Load, then write the loaded ``up`` / ``reg_scale`` into the coder
        (one value for the decoder and the loss); a value that differs from
        the configured one by more than float32 rounding (e.g. a checkpoint
        of another variant) is logged as a warning naming both."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        coder = self.bbox_coder
        for name in ('up', 'reg_scale'):
            loaded = getattr(self, name).reshape(-1)[0].item()
            configured = getattr(coder, name)
            if abs(loaded - configured) > 1e-6 * max(1.0, abs(configured)):
                print_log(
                    f'checkpoint {prefix}{name}={loaded:g} differs from '
                    f'model.bbox_head.bbox_coder.{name}={configured:g}; '
                    'using the checkpoint value',
                    logger='current',
                    level=logging.WARNING)
            setattr(coder, name, loaded)

    @property
    def reg_max(self) -> int:
        """Bin intervals per edge (the coder's)."""
        return self.bbox_coder.reg_max

    def project(self) -> Tensor:
        """Weighting function ``W(n)`` (Eq. 4) of the buffers, shape
        ``[reg_max + 1]``."""
        return self.bbox_coder.project(self.up, self.reg_scale)

    def forward(self,
                query: Tensor,
                ref_unact: Tensor,
                memory: Tensor,
                spatial_shapes: SpatialShapes,
                reg_branches: nn.ModuleList,
                pre_reg_branch: nn.Module,
                attn_mask: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Run the decoder layers with FDR.

        Args:
            query (Tensor): Initial content queries ``[B, Q, D]`` (``Q`` =
                denoising + matching queries in training).
            ref_unact (Tensor): Initial reference boxes in logit space
                ``[B, Q, 4]`` (cxcywh).
            memory (Tensor): Encoder tokens ``[B, N, D]``.
            spatial_shapes: ``[(H_l, W_l)]``, ``sum(H_l W_l) = N``.
            reg_branches (nn.ModuleList): Per-layer corner heads ``D -> 4 *
                (reg_max + 1)``.
            pre_reg_branch (nn.Module): Layer-0 box head ``D -> 4`` (delta in
                logit space) that produces the fixed FDR reference.
            attn_mask (Tensor, optional): ``[Q, Q]`` bool self-attention mask,
                True = blocked.

        Returns:
            dict: With ``L'`` = ``num_layers`` in training and
            ``eval_idx + 1`` at inference:

            - hidden_states (Tensor): ``[L', B, Q, D]`` layer outputs.
            - pred_boxes (Tensor): ``[L', B, Q, 4]`` normalised cxcywh.
            - pred_corners (Tensor): ``[L', B, Q, 4 * (reg_max + 1)]``
              accumulated corner logits (edge-major l, t, r, b).
            - ref_points (Tensor): ``[B, Q, 4]`` the fixed reference ``b_init``
              (detached pre-head box), cxcywh.
            - pre_boxes (Tensor): ``[B, Q, 4]`` layer-0 pre-head boxes (not
              detached; trained by the ``_pre`` loss terms).
        """
        value = self.layers[0].cross_attn.split_value(memory, spatial_shapes)
        project = self.project()
        num_run = self.num_layers if self.training else self.eval_idx + 1

        ref_detach = F.sigmoid(ref_unact)
        output = query
        output_detach: Union[Tensor, float] = 0.
        corners: Optional[Tensor] = None
        hidden_states, all_boxes, all_corners = [], [], []
        ref_init = pre_boxes = None
        for i in range(num_run):
            layer = self.layers[i]
            query_pos = self.query_pos_head(ref_detach).clamp(min=-10, max=10)
            output = layer(output, ref_detach.unsqueeze(2), value,
                           spatial_shapes, attn_mask, query_pos)
            if i == 0:
                pre_boxes, ref_init = pre_refine(pre_reg_branch, output,
                                                 ref_detach)
            corners, box = fdr_refine(reg_branches[i], output + output_detach,
                                      corners, ref_init, self.bbox_coder,
                                      project, self.reg_scale)
            hidden_states.append(output)
            all_boxes.append(box)
            all_corners.append(corners)
            ref_detach = box.detach()
            output_detach = output.detach()

        return dict(
            hidden_states=torch.stack(hidden_states),
            pred_boxes=torch.stack(all_boxes),
            pred_corners=torch.stack(all_corners),
            ref_points=ref_init,
            pre_boxes=pre_boxes)
