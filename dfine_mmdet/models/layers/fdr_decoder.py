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
where ``reg_max`` / ``reg_scale`` / ``up`` are configured.  The class logits (``cls_branch_i +
LQE_i``) are computed by :class:`~dfine_mmdet.models.dense_heads.DFINEHead`
from the hidden states returned here.

Written for the plugin: mmdet's ``DinoTransformerDecoder`` refines box deltas
with per-layer references and has no FDR, no gate and no pre-head, so it
cannot be reused.  Parameter names inside the layers follow the official
checkpoints (``self_attn``, ``norm1``, ``cross_attn``, ``gateway``,
``linear1``, ``linear2``, ``norm3``).
"""
from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import TASK_UTILS
from torch import Tensor, nn

from ..task_modules.coders.fdr_coder import FDRBBoxCoder
from ..utils import SpatialShapes
from .act_mlp import ActMLP, build_act
from .gate import Gate
from .ms_deform_attn import MSDeformableAttention


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
        activation (str): FFN activation, ``'relu'`` (D-FINE, default) or
            ``'silu'`` (DEIM); set through the decoder's ``activation``.
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
        self.activation = build_act(activation)
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
        # need_weights=True (the default) keeps PyTorch's explicit-softmax
        # path, which is what the official model runs.
        attn_out, _ = self.self_attn(q, k, value=query, attn_mask=attn_mask)
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
            :class:`DFINETransformerDecoderLayer`.
        bbox_coder (dict | FDRBBoxCoder): The FDR coder (an object is used
            as is and shared, e.g. the head's). Its ``reg_max`` is the bin
            count, its ``reg_scale`` (``c``; 4, 8 for D-FINE-X) and ``up``
            (``a``) initialise the ``reg_scale`` / ``up`` buffers
            (``reg_scale`` int64 when integral, as in official checkpoints).
            Default: ``FDRBBoxCoder()`` (reg_max 32, reg_scale 4, up 0.5).
        eval_idx (int): Index of the layer whose output is used at inference
            (negative counts from the end); at inference the loop stops after
            it. Default -1.
        activation (str): Decoder-layer FFN activation (DEIM's
            ``activation``; the detector gives it to the head's LQE too).
            ``'relu'`` (D-FINE, default) or ``'silu'`` (DEIM).
        mlp_act (str): Activation of the query-position MLP (DEIM's
            ``mlp_act``; the detector gives it to the head's box / corner
            MLPs too). Default ``'relu'``.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 bbox_coder: Union[dict, FDRBBoxCoder, None] = None,
                 eval_idx: int = -1,
                 activation: str = 'relu',
                 mlp_act: str = 'relu') -> None:
        super().__init__()
        layer_cfg = dict(layer_cfg)
        layer_cfg.setdefault('activation', activation)
        if bbox_coder is None:
            bbox_coder = dict(type='FDRBBoxCoder')
        if isinstance(bbox_coder, dict):
            bbox_coder = TASK_UTILS.build(bbox_coder)
        self.bbox_coder = bbox_coder
        up, reg_scale = bbox_coder.up, bbox_coder.reg_scale
        self.num_layers = num_layers
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx
        if not 0 <= self.eval_idx < num_layers:
            raise ValueError(f'eval_idx={eval_idx} is out of range for '
                             f'{num_layers} decoder layers')
        self.layers = nn.ModuleList([
            DFINETransformerDecoderLayer(**layer_cfg)
            for _ in range(num_layers)
        ])
        self.embed_dims = self.layers[0].embed_dims
        # positional embedding of the current reference box (4 -> 2D -> D)
        self.query_pos_head = ActMLP(
            4, 2 * self.embed_dims, self.embed_dims, 2, act=mlp_act)
        # W(n) hyper-parameters. The official model registers each as a
        # non-trainable Parameter under two names (decoder.up and
        # decoder.decoder.up); here each is one buffer. As officially, `up`
        # is float32 (averaged by the EMA) and an integral `reg_scale` is
        # int64: the FDR arithmetic then follows the official int64 -> float32
        # promotions bit for bit and the EMA (floating-point entries only)
        # leaves it untouched. A non-integral reg_scale is stored as float32.
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
            - up, reg_scale (Tensor): ``[1]`` the ``W(n)`` buffers.
        """
        value = self.layers[0].cross_attn.split_value(memory, spatial_shapes)
        project = self.project()
        num_run = self.num_layers if self.training else self.eval_idx + 1

        ref_detach = F.sigmoid(ref_unact)
        output = query
        output_detach: Union[Tensor, float] = 0.
        corners_prev: Union[Tensor, float] = 0.
        hidden_states, boxes, corners = [], [], []
        ref_init = pre_boxes = None
        for i in range(num_run):
            layer = self.layers[i]
            query_pos = self.query_pos_head(ref_detach).clamp(min=-10, max=10)
            output = layer(output, ref_detach.unsqueeze(2), value,
                           spatial_shapes, attn_mask, query_pos)
            if i == 0:
                pre_boxes = F.sigmoid(
                    pre_reg_branch(output) + inverse_sigmoid(ref_detach))
                ref_init = pre_boxes.detach()
            pred_corners = reg_branches[i](output + output_detach) \
                + corners_prev
            box = self.bbox_coder.decode(
                ref_init, pred_corners, reg_scale=self.reg_scale,
                project=project)
            hidden_states.append(output)
            boxes.append(box)
            corners.append(pred_corners)

            corners_prev = pred_corners
            ref_detach = box.detach()
            output_detach = output.detach()

        return dict(
            hidden_states=torch.stack(hidden_states),
            pred_boxes=torch.stack(boxes),
            pred_corners=torch.stack(corners),
            ref_points=ref_init,
            pre_boxes=pre_boxes,
            up=self.up,
            reg_scale=self.reg_scale)
