"""Hybrid encoder of D-FINE: RT-DETR's hybrid encoder with GELAN fusion.

Two parts (RT-DETR, Sec. 4.2; D-FINE keeps them and swaps the fusion blocks):

* **AIFI** (attention-based intra-scale feature interaction): one post-norm
  transformer encoder layer on the tokens of the stride-32 map, with the
  official 2-D sin-cos position embedding (see
  :mod:`dfine_mmdet.models.layers.aifi`).
* **CCFF** (CNN-based cross-scale feature fusion): a top-down FPN then a
  bottom-up PAN whose fusion blocks are GELAN ``RepNCSPELAN4`` and whose
  downsampling is ``SCDown`` (see
  :mod:`dfine_mmdet.models.layers.gelan_blocks`).

Sub-module names equal the official ones (``input_proj.{i}.conv/norm``,
``encoder.{k}.layers.{j}``, ``lateral_convs``, ``fpn_blocks``,
``downsample_convs``, ``pan_blocks``): an official ``encoder.X`` checkpoint
entry is our ``neck.X``.

Differences from the official module, none of which changes the numbers: the
position embedding is built for the actual feature shape (and cached) instead
of being frozen to ``eval_spatial_size``, so any input size, also rectangular,
works in eval; when a feature-map size is not exactly twice the next one (input
not divisible by 32) the FPN upsamples to the lateral map's size instead of
failing.
"""
from collections import OrderedDict
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule

from ..layers.aifi import AIFIEncoder, SinCos2DPositionEmbedding
from ..layers.gelan_blocks import ConvNormLayer, RepNCSPELAN4, SCDown


@MODELS.register_module()
class HybridEncoder(BaseModule):
    """D-FINE hybrid encoder (AIFI + GELAN CCFF), the detector's ``neck``.

    Args:
        in_channels (Sequence[int]): channels of the backbone maps (high
            resolution first).
        feat_strides (Sequence[int]): their strides (informative; the output
            has the same).  In a ``DFINE`` model filled in from
            ``model.feat_strides``.
        embed_dims (int): encoder width ``hd`` (all outputs have ``hd``
            channels); official ``embed_dims``.
        use_encoder_idx (Sequence[int]): levels that get AIFI (D-FINE: the last
            one).
        num_encoder_layers (int): AIFI layers per level (0 disables AIFI).
        num_heads (int): attention heads (official ``nhead``).
        feedforward_channels (int): AIFI FFN width (official
            ``dim_feedforward``).
        dropout (float): AIFI dropout.
        enc_act (str): AIFI FFN activation (``'gelu'``).
        expansion (float): GELAN branch width
            ``c4 = round(expansion * hd // 2)``.
        depth_mult (float): VGGBlocks per CSPLayer
            ``n = round(3 * depth_mult)``.
        act (str): activation of the GELAN blocks (``'silu'``; the official
            code ignores this argument and hard-codes SiLU, equal to every
            config's value).
        pe_temperature (float): sin-cos position-embedding temperature.
        init_cfg (dict, optional): mmengine init config. Default None keeps
            PyTorch's default initialisation, as the official code.

    Input: tuple of ``len(in_channels)`` maps
    ``[B, in_channels[i], H_i, W_i]`` (high resolution first).
    Output: tuple of as many maps ``[B, embed_dims, H_i, W_i]``.

    Argument names follow MMDetection (as the decoder's ``layer_cfg``); the
    parameter names (state-dict keys) are the official ones.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (512, 1024, 2048),
                 feat_strides: Sequence[int] = (8, 16, 32),
                 embed_dims: int = 256,
                 use_encoder_idx: Sequence[int] = (2, ),
                 num_encoder_layers: int = 1,
                 num_heads: int = 8,
                 feedforward_channels: int = 1024,
                 dropout: float = 0.0,
                 enc_act: str = 'gelu',
                 expansion: float = 1.0,
                 depth_mult: float = 1.0,
                 act: str = 'silu',
                 pe_temperature: float = 10000.,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if len(feat_strides) != len(in_channels):
            raise ValueError(
                f'HybridEncoder: feat_strides {list(feat_strides)} and '
                f'in_channels {list(in_channels)} must have the same length')
        num_levels = len(in_channels)
        bad = [i for i in use_encoder_idx if not 0 <= i < num_levels]
        if bad:
            raise ValueError(
                f'HybridEncoder: use_encoder_idx {list(use_encoder_idx)} '
                f'out of range for {num_levels} input levels')
        self.in_channels = list(in_channels)
        self.feat_strides = list(feat_strides)
        self.embed_dims = embed_dims
        self.use_encoder_idx = list(use_encoder_idx)
        self.num_encoder_layers = num_encoder_layers
        self.pe_temperature = pe_temperature
        self.out_channels = [embed_dims] * num_levels
        self.out_strides = list(feat_strides)

        # channel projection: 1x1 conv + BN, no activation
        self.input_proj = nn.ModuleList([
            nn.Sequential(
                OrderedDict([('conv', nn.Conv2d(c, embed_dims, 1, bias=False)),
                             ('norm', nn.BatchNorm2d(embed_dims))]))
            for c in in_channels
        ])

        # AIFI: intra-scale interaction on the selected levels
        self.encoder = nn.ModuleList([
            AIFIEncoder(
                num_encoder_layers,
                d_model=embed_dims,
                nhead=num_heads,
                dim_feedforward=feedforward_channels,
                dropout=dropout,
                activation=enc_act) for _ in self.use_encoder_idx
        ])
        self.pos_embed = SinCos2DPositionEmbedding(embed_dims, pe_temperature)

        # CCFF: top-down FPN, then bottom-up PAN
        c4 = round(expansion * embed_dims // 2)
        n = round(3 * depth_mult)

        def gelan():
            return RepNCSPELAN4(
                embed_dims * 2, embed_dims, embed_dims * 2, c4, n, act=act)

        self.lateral_convs = nn.ModuleList([
            ConvNormLayer(embed_dims, embed_dims, 1, 1)
            for _ in range(num_levels - 1)
        ])
        self.fpn_blocks = nn.ModuleList(
            [gelan() for _ in range(num_levels - 1)])
        self.downsample_convs = nn.ModuleList([
            nn.Sequential(SCDown(embed_dims, embed_dims, 3, 2))
            for _ in range(num_levels - 1)
        ])
        self.pan_blocks = nn.ModuleList(
            [gelan() for _ in range(num_levels - 1)])

    def forward_aifi(self, feat: torch.Tensor, i: int) -> torch.Tensor:
        """AIFI on one projected map: ``[B, hd, H, W] -> [B, hd, H, W]``.

        Tokens are the row-major flattening (``y * W + x``) of the map.
        """
        b, c, h, w = feat.shape
        src = feat.flatten(2).permute(0, 2, 1)
        pos = self.pos_embed(h, w, device=src.device, dtype=src.dtype)
        memory = self.encoder[i](src, pos_embed=pos)
        return memory.permute(0, 2, 1).reshape(b, c, h, w).contiguous()

    def forward(self,
                feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        """Backbone maps (high res first) -> ``embed_dims``-channel maps."""
        if len(feats) != len(self.in_channels):
            raise ValueError(
                f'HybridEncoder expects {len(self.in_channels)} feature maps '
                f'(in_channels={self.in_channels}), got {len(feats)}')
        for i, f in enumerate(feats):
            if f.shape[1] != self.in_channels[i]:
                raise ValueError(
                    f'HybridEncoder.in_channels[{i}]={self.in_channels[i]} '
                    f'but the backbone gives {f.shape[1]} channels at that '
                    f'level (backbone channels: '
                    f'{[int(x.shape[1]) for x in feats]}); set '
                    'neck.in_channels to match backbone.out_indices')
        proj = [m(f) for m, f in zip(self.input_proj, feats)]

        if self.num_encoder_layers > 0:
            for i, level in enumerate(self.use_encoder_idx):
                proj[level] = self.forward_aifi(proj[level], i)

        # top-down: the lateral output replaces the stored high-level map
        num_levels = len(self.in_channels)
        inner_outs = [proj[-1]]
        for idx in range(num_levels - 1, 0, -1):
            j = num_levels - 1 - idx
            feat_high = self.lateral_convs[j](inner_outs[0])
            inner_outs[0] = feat_high
            feat_low = proj[idx - 1]
            up = F.interpolate(feat_high, scale_factor=2., mode='nearest')
            if up.shape[-2:] != feat_low.shape[-2:]:
                up = F.interpolate(
                    feat_high, size=feat_low.shape[-2:], mode='nearest')
            inner_outs.insert(
                0, self.fpn_blocks[j](torch.cat([up, feat_low], dim=1)))

        # bottom-up
        outs = [inner_outs[0]]
        for idx in range(num_levels - 1):
            down = self.downsample_convs[idx](outs[-1])
            outs.append(self.pan_blocks[idx](torch.cat(
                [down, inner_outs[idx + 1]], dim=1)))
        return tuple(outs)
