"""Multi-scale deformable cross-attention of the D-FINE decoder.

This is the RT-DETRv2 variant of deformable attention (Zhu et al., Deformable
DETR, Eq. 3) that D-FINE uses for the decoder cross-attention:

* every query predicts ``num_heads x sum(num_points)`` sampling offsets and one
  attention logit per sampled point; a level may have its own number of points
  (``num_points=[3, 6, 3]`` in D-FINE S-X, ``[6, 6]`` in N);
* the offsets are scaled by the reference box size, i.e. the sampling location
  of point ``p`` of level ``l`` is ``ref_xy + offset * ref_wh * 0.5 / n_l``;
* the attention logits are soft-maxed **jointly over all points of all
  levels** (Deformable DETR normalises per head as well, but the RT-DETRv2
  grouping is level-major with uneven point counts);
* values are bilinearly sampled with ``F.grid_sample(align_corners=False,
  padding_mode='zeros')`` -- pure PyTorch, no custom CUDA op, so it runs on CPU
  and exports to ONNX;
* there is **no value projection and no output projection** (the official
  D-FINE decoder dropped both).

mmcv's ``MultiScaleDeformableAttention`` has value/output projections, the
same number of points on every level and a per-level point layout, so it is
not numerically equivalent; this module is written for the plugin.  Parameter
names (``sampling_offsets``, ``attention_weights``, buffer
``num_points_scale``) equal the official ones so checkpoints map 1:1.
"""
import math
from typing import List, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils import SpatialShapes


class MSDeformableAttention(nn.Module):
    """Deformable cross-attention with box-scaled offsets (RT-DETRv2 style).

    Args:
        embed_dims (int): Query / value width ``D``. Default 256.
        num_heads (int): Number of heads ``M``; ``D`` must be divisible by it.
            Default 8.
        num_levels (int): Number of feature levels ``L``. Default 3.
        num_points (int | list[int]): Sampling points per level (one int for
            all levels, or one per level). Default 4.
        offset_scale (float): Factor applied to ``offset * ref_wh``.
            Default 0.5.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_levels: int = 3,
                 num_points: Union[int, List[int]] = 4,
                 offset_scale: float = 0.5) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads})')
        if isinstance(num_points, int):
            num_points = [num_points] * num_levels
        num_points = [int(n) for n in num_points]
        if len(num_points) != num_levels:
            raise ValueError(f'num_points {num_points} must have one entry '
                             f'per level (num_levels={num_levels})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points_list = num_points
        self.total_points = sum(num_points)
        self.head_dims = embed_dims // num_heads
        self.offset_scale = offset_scale

        # 1 / n_l for every point of level l: offsets of levels with many
        # points are spread over the same box extent.
        scale = [1.0 / n for n in num_points for _ in range(n)]
        self.register_buffer('num_points_scale',
                             torch.tensor(scale, dtype=torch.float32))

        self.sampling_offsets = nn.Linear(
            embed_dims, num_heads * self.total_points * 2)
        self.attention_weights = nn.Linear(embed_dims,
                                           num_heads * self.total_points)
        self.init_weights()

    def init_weights(self) -> None:
        """Official init: zero weights, offsets point in 8 fixed directions
        (``(cos, sin)`` of ``2 pi h / M`` scaled to unit max-norm) times the
        point index within its level; uniform attention."""
        nn.init.constant_(self.sampling_offsets.weight, 0.)
        thetas = torch.arange(
            self.num_heads, dtype=torch.float32) * (2.0 * math.pi /
                                                    self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.reshape(self.num_heads, 1, 2).tile(
            [1, self.total_points, 1])
        scaling = torch.cat([
            torch.arange(1, n + 1) for n in self.num_points_list
        ]).reshape(1, -1, 1)
        grid = grid * scaling
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.constant_(self.attention_weights.weight, 0.)
        nn.init.constant_(self.attention_weights.bias, 0.)

    def split_value(self, value: Tensor,
                    spatial_shapes: SpatialShapes) -> List[Tensor]:
        """Reshape flattened memory into per-level per-head value maps.

        Args:
            value (Tensor): Memory tokens ``[B, sum(H_l W_l), D]``, levels
                concatenated high resolution first, each row-major.
            spatial_shapes: ``[(H_l, W_l)]`` per level.

        Returns:
            list[Tensor]: Per level ``[B * M, D / M, H_l, W_l]``.
        """
        bs, num_tokens, _ = value.shape
        value = value.reshape(bs, num_tokens, self.num_heads, self.head_dims)
        value = value.permute(0, 2, 3, 1)  # [B, M, D/M, N]
        sizes = [int(h) * int(w) for h, w in spatial_shapes]
        return [
            v.reshape(bs * self.num_heads, self.head_dims, int(h), int(w))
            for v, (h, w) in zip(value.split(sizes, dim=-1), spatial_shapes)
        ]

    def forward(self, query: Tensor, reference_boxes: Tensor,
                value: Union[Tensor, List[Tensor]],
                spatial_shapes: SpatialShapes) -> Tensor:
        """Sample the memory around each query's reference box.

        Args:
            query (Tensor): ``[B, Q, D]`` (content + positional embedding).
            reference_boxes (Tensor): ``[B, Q, 1, 4]`` normalised
                ``(cx, cy, w, h)`` boxes, shared by all levels.
            value (Tensor | list[Tensor]): Memory ``[B, N, D]`` or its
                :meth:`split_value` result (the decoder splits it once and
                reuses it in every layer).
            spatial_shapes: ``[(H_l, W_l)]`` per level.

        Returns:
            Tensor: ``[B, Q, D]``.
        """
        bs, num_query = query.shape[:2]
        if isinstance(value, Tensor):
            value = self.split_value(value, spatial_shapes)
        if reference_boxes.shape[-1] != 4:
            raise ValueError('reference_boxes must be (cx, cy, w, h) boxes '
                             f'of shape [B, Q, 1, 4], got '
                             f'{tuple(reference_boxes.shape)}')

        offsets = self.sampling_offsets(query).reshape(
            bs, num_query, self.num_heads, self.total_points, 2)
        weights = self.attention_weights(query).reshape(
            bs, num_query, self.num_heads, self.total_points)
        weights = F.softmax(weights, dim=-1)

        # loc = ref_xy + offset * (1 / n_l) * ref_wh * offset_scale
        pts_scale = self.num_points_scale.to(dtype=query.dtype).unsqueeze(-1)
        offsets = offsets * pts_scale * reference_boxes[:, :, None, :, 2:] \
            * self.offset_scale
        locations = reference_boxes[:, :, None, :, :2] + offsets

        # [B, Q, M, P, 2] -> [B*M, Q, P, 2] in grid_sample's [-1, 1] space
        grids = (2 * locations - 1).permute(0, 2, 1, 3, 4).flatten(0, 1)
        grids = grids.split(self.num_points_list, dim=-2)
        sampled = [
            F.grid_sample(
                value_l,
                grid_l,
                mode='bilinear',
                padding_mode='zeros',
                align_corners=False)  # [B*M, D/M, Q, P_l]
            for value_l, grid_l in zip(value, grids)
        ]
        weights = weights.permute(0, 2, 1, 3).reshape(
            bs * self.num_heads, 1, num_query, self.total_points)
        out = (torch.cat(sampled, dim=-1) * weights).sum(-1)
        return out.reshape(bs, self.embed_dims, num_query).permute(0, 2, 1)
