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
* values are bilinearly sampled as ``F.grid_sample(align_corners=False,
  padding_mode='zeros')`` does -- pure PyTorch, no custom CUDA op, so it runs
  on CPU and exports to ONNX;
* there is **no value projection and no output projection** (the official
  D-FINE decoder dropped both).

Sampling backends (``sampler``, see :data:`SAMPLERS`): ``'grid_sample'``
(default, exports as ONNX ``GridSample``) or ``'gather'``
(:func:`grid_sample_gather`: the same bilinear interpolation written with
``floor``, index arithmetic and one row ``Gather`` per call, for runtimes
that lack ``GridSample`` or miscompile it, e.g. NVIDIA/TensorRT#4813). Both
compute the same function; a deploy config can switch an exported model to
``'gather'`` without touching the model config (``deform_attn_sampler`` key,
:mod:`dfine_mmdet.deploy.deform_attn_sampler`).

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


def grid_sample_gather(value: Tensor, grid: Tensor) -> Tensor:
    """``F.grid_sample(value, grid, mode='bilinear', padding_mode='zeros',
    align_corners=False)`` with only gather and index arithmetic.

    Every sampling point reads its four neighbouring pixels with one
    ``Gather`` over the rows of a ``[N * H * W, C]`` table (a plain ONNX
    ``Gather`` on axis 0, the most widely supported gather); neighbours
    outside the map get weight 0 (zero padding). Pixel coordinates follow
    ``align_corners=False``: ``x_pix = ((x + 1) * W - 1) / 2``, so ``x = -1``
    is the left edge of the first pixel and its centre is ``x_pix = 0``.
    Differentiable in ``value`` and ``grid`` (the gradient in ``grid`` is
    that of bilinear interpolation, as ``grid_sample``'s).

    Args:
        value (Tensor): Feature maps ``[N, C, H, W]``.
        grid (Tensor): Sampling points ``[N, Hg, Wg, 2]``, ``(x, y)``
            normalised to ``[-1, 1]``; points outside are allowed.

    Returns:
        Tensor: ``[N, C, Hg, Wg]``.
    """
    if value.dim() != 4 or grid.dim() != 4 or grid.shape[-1] != 2:
        raise ValueError('grid_sample_gather expects value [N, C, H, W] and '
                         f'grid [N, Hg, Wg, 2], got {tuple(value.shape)} and '
                         f'{tuple(grid.shape)}')
    n, c, h, w = value.shape
    hg, wg = grid.shape[1], grid.shape[2]
    # pixel coordinates; points more than one pixel outside are clamped
    # there (all four neighbours stay outside, so the result is still 0
    # and no index overflows)
    x = ((grid[..., 0] + 1) * (w * 0.5) - 0.5).clamp(-2, w + 1)
    y = ((grid[..., 1] + 1) * (h * 0.5) - 0.5).clamp(-2, h + 1)
    x0, y0 = x.floor(), y.floor()
    # the two neighbours along each axis (offset 0 / 1) and their linear
    # weights (1 - f, f), zeroed outside the map; the four corners are the
    # outer products (top-left, top-right, bottom-left, bottom-right).
    # Broadcasting, not stacking: no Concat node in the exported graph.
    step = grid.new_tensor((0., 1.))
    cx = x0.unsqueeze(-1) + step  # [N, Hg, Wg, 2]
    cy = y0.unsqueeze(-1) + step
    wx = (1 - step) + (2 * step - 1) * (x - x0).unsqueeze(-1)
    wy = (1 - step) + (2 * step - 1) * (y - y0).unsqueeze(-1)
    wx = wx * ((cx >= 0) & (cx <= w - 1)).to(grid.dtype)
    wy = wy * ((cy >= 0) & (cy <= h - 1)).to(grid.dtype)
    weights = (wy.unsqueeze(-1) * wx.unsqueeze(-2)).reshape(n, hg * wg, 4, 1)
    # row of each neighbour in the [N * H * W, C] table; clamped so that
    # outside neighbours read a valid (zero-weighted) row. Per-image indices
    # are < H * W, exact in float32 below 2**24; the batch offset is int64.
    rows = (cy.clamp(0, h - 1).unsqueeze(-1) * w +
            cx.clamp(0, w - 1).unsqueeze(-2)).long()  # [N, Hg, Wg, 2, 2]
    rows = rows + (torch.arange(n, device=grid.device) *
                   (h * w)).view(n, 1, 1, 1, 1)
    table = value.permute(0, 2, 3, 1).reshape(n * h * w, c)
    picked = table[rows.reshape(-1)].reshape(n, hg * wg, 4, c)
    out = (picked * weights).sum(2)  # [N, Hg * Wg, C]
    return out.permute(0, 2, 1).reshape(n, c, hg, wg)


def grid_sample_native(value: Tensor, grid: Tensor) -> Tensor:
    """``F.grid_sample`` with the settings of deformable attention
    (bilinear, zero padding, ``align_corners=False``); ``[N, C, H, W]`` x
    ``[N, Hg, Wg, 2]`` -> ``[N, C, Hg, Wg]``."""
    return F.grid_sample(
        value,
        grid,
        mode='bilinear',
        padding_mode='zeros',
        align_corners=False)


#: ``sampler`` name -> bilinear sampling function ``(value, grid) -> out``
SAMPLERS = dict(grid_sample=grid_sample_native, gather=grid_sample_gather)


def sample_bilinear(value: Tensor,
                    grid: Tensor,
                    sampler: str = 'grid_sample') -> Tensor:
    """Bilinear, zero-padded, ``align_corners=False`` sampling of ``value``
    ``[N, C, H, W]`` at ``grid`` ``[N, Hg, Wg, 2]`` with the named
    :data:`SAMPLERS` entry. (MMDeploy export rewrites this function when the
    deploy config sets ``deform_attn_sampler``.)"""
    try:
        fn = SAMPLERS[sampler]
    except KeyError:
        raise ValueError(f'deformable attention sampler {sampler!r}: '
                         f'expected one of {sorted(SAMPLERS)}') from None
    return fn(value, grid)


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
        sampler (str): Bilinear sampling implementation, ``'grid_sample'``
            (``F.grid_sample``, ONNX ``GridSample``) or ``'gather'``
            (:func:`grid_sample_gather`, ONNX ``Gather`` + index
            arithmetic). Same results; default ``'grid_sample'``.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_levels: int = 3,
                 num_points: Union[int, List[int]] = 4,
                 offset_scale: float = 0.5,
                 sampler: str = 'grid_sample') -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f'sampler {sampler!r}: expected one of '
                             f'{sorted(SAMPLERS)}')
        self.sampler = sampler
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

        self.sampling_offsets = nn.Linear(embed_dims,
                                          num_heads * self.total_points * 2)
        self.attention_weights = nn.Linear(embed_dims,
                                           num_heads * self.total_points)
        self.init_weights()

    def init_weights(self) -> None:
        """Official init: zero weights, offsets point in 8 fixed directions
        (``(cos, sin)`` of ``2 pi h / M`` scaled to unit max-norm) times the
        point index within its level; uniform attention."""
        nn.init.constant_(self.sampling_offsets.weight, 0.)
        thetas = torch.arange(
            self.num_heads,
            dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.reshape(self.num_heads, 1,
                            2).tile([1, self.total_points, 1])
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

        offsets = self.sampling_offsets(query).reshape(bs, num_query,
                                                       self.num_heads,
                                                       self.total_points, 2)
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
            sample_bilinear(value_l, grid_l,
                            self.sampler)  # [B*M, D/M, Q, P_l]
            for value_l, grid_l in zip(value, grids)
        ]
        weights = weights.permute(0, 2, 1,
                                  3).reshape(bs * self.num_heads, 1, num_query,
                                             self.total_points)
        out = (torch.cat(sampled, dim=-1) * weights).sum(-1)
        return out.reshape(bs, self.embed_dims, num_query).permute(0, 2, 1)
