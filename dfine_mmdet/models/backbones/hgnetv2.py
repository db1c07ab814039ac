"""HGNetV2 backbone (PP-HGNetV2, as used by D-FINE / RT-DETRv2).

The network is a stem (stride 4) followed by four HG stages (strides 4, 8, 16,
32). Each HG block runs ``layer_num`` convs in sequence, concatenates the input
with every intermediate output and aggregates them with two 1x1 convs (squeeze
to ``out/2``, excite to ``out``). Stages 3-4 use "light" blocks (1x1 conv +
depthwise kxk). ``use_lab`` adds a learnable scalar affine
(``LearnableAffineBlock``) after every activation (used by the B0-based N/S and
the B2-based M models).

The layout follows timm's ``hgnet.py``: small blocks first, one architecture
table (:attr:`HGNetV2.arch_settings`), one network class. Sub-module names are
those of the official D-FINE code (``stem.stem1.conv``,
``stages.{i}.downsample``, ``stages.{i}.blocks.{j}.layers.{k}``,
``...aggregation.{0,1}``...), so an official ``backbone.*`` checkpoint entry or
an official ImageNet-pretrained ``PPHGNetV2_*`` file loads without any key
change. The blocks are written here because neither MMDetection nor MMCV has
HGNetV2.
"""
import os.path as osp
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    'LearnableAffineBlock', 'FrozenBatchNorm2d', 'ConvBNAct', 'LightConvBNAct',
    'StemBlock', 'HGBlock', 'HGStage', 'HGNetV2', 'freeze_batch_norm2d'
]


class LearnableAffineBlock(nn.Module):
    """``scale * x + bias`` with learnable scalars ``scale`` and ``bias``.

    The bias is added in place to the fresh product (the same two ATen ops
    as ``scale * x + bias``, bit-identical values and gradients; one tensor
    less to allocate and write per call, measured in docs/profiling.md).
    """

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale_value]))
        self.bias = nn.Parameter(torch.tensor([bias_value]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * x).add_(self.bias)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine terms.

    The official ``FrozenBatchNorm2d`` (which adds ``eps`` to torchvision's).
    Buffers ``weight``, ``bias``, ``running_mean``, ``running_var`` (no
    ``num_batches_tracked``: a checkpoint entry of that name is dropped on
    load). ``y = x * scale + (bias - running_mean * scale)`` with
    ``scale = weight * rsqrt(running_var + eps)``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer('weight', torch.ones(num_features))
        self.register_buffer('bias', torch.zeros(num_features))
        self.register_buffer('running_mean', torch.zeros(num_features))
        self.register_buffer('running_var', torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        state_dict.pop(prefix + 'num_batches_tracked', None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight.reshape(1, -1, 1, 1) * (
            self.running_var.reshape(1, -1, 1, 1) + self.eps).rsqrt()
        bias = self.bias.reshape(
            1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale + bias

    def extra_repr(self) -> str:
        return f'{self.num_features}, eps={self.eps}'


def freeze_batch_norm2d(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` by a :class:`FrozenBatchNorm2d`.

    As the official ``_freeze_norm``, the new modules hold default values
    (1, 0, 0, 1); the weights come from the checkpoint loaded afterwards.
    """
    if isinstance(module, nn.BatchNorm2d):
        return FrozenBatchNorm2d(module.num_features, module.eps)
    for name, child in module.named_children():
        new_child = freeze_batch_norm2d(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU -> LearnableAffineBlock.

    ``act`` is ReLU when ``use_act`` else Identity; ``lab`` exists only when
    both ``use_act`` and ``use_lab`` (else Identity, no keys). Padding
    ``(k - 1) // 2`` (0 for the stem's 2x2 convs). The ReLU works in place on
    the batch norm's output, which nothing else reads (batch norm's backward
    needs its input, not its output): bit-identical, one full-size tensor
    less per layer.
    """

    def __init__(self,
                 in_chs: int,
                 out_chs: int,
                 kernel_size: int,
                 stride: int = 1,
                 groups: int = 1,
                 use_act: bool = True,
                 use_lab: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs,
            out_chs,
            kernel_size,
            stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True) if use_act else nn.Identity()
        self.lab = LearnableAffineBlock() if (use_act
                                              and use_lab) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lab(self.act(self.bn(self.conv(x))))


class LightConvBNAct(nn.Module):
    """``conv1`` 1x1 (no activation), then ``conv2`` depthwise kxk + ReLU."""

    def __init__(self,
                 in_chs: int,
                 out_chs: int,
                 kernel_size: int,
                 use_lab: bool = False):
        super().__init__()
        self.conv1 = ConvBNAct(
            in_chs, out_chs, 1, use_act=False, use_lab=use_lab)
        self.conv2 = ConvBNAct(
            out_chs, out_chs, kernel_size, groups=out_chs, use_lab=use_lab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Module):
    """HGNetV2 stem, ``[B, in, H, W] -> [B, out, H/4, W/4]``.

    ``x = stem1(x)`` (3x3 s2), zero-pad right/bottom by 1; branch A: ``stem2a``
    (2x2) -> pad -> ``stem2b`` (2x2); branch B: 2x2 max-pool (stride 1) of the
    padded ``x``; ``stem3`` (3x3 s2) on ``cat[B, A]`` (pool first), then
    ``stem4`` (1x1).
    """

    def __init__(self,
                 in_chs: int,
                 mid_chs: int,
                 out_chs: int,
                 use_lab: bool = False):
        super().__init__()
        self.stem1 = ConvBNAct(in_chs, mid_chs, 3, stride=2, use_lab=use_lab)
        self.stem2a = ConvBNAct(mid_chs, mid_chs // 2, 2, use_lab=use_lab)
        self.stem2b = ConvBNAct(mid_chs // 2, mid_chs, 2, use_lab=use_lab)
        self.stem3 = ConvBNAct(
            mid_chs * 2, mid_chs, 3, stride=2, use_lab=use_lab)
        self.stem4 = ConvBNAct(mid_chs, out_chs, 1, use_lab=use_lab)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))
        x2 = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        x1 = self.pool(x)
        x = self.stem3(torch.cat([x1, x2], dim=1))
        return self.stem4(x)


class HGBlock(nn.Module):
    """HG block: official ``HG_Block`` with ``agg='se'`` (all D-FINE uses).

    ``layers.{k}`` (k < layer_num): ConvBNAct kxk or LightConvBNAct, input
    ``in_chs`` for the first, ``mid_chs`` after; ``aggregation`` =
    Sequential(1x1 ``in+n*mid -> out/2``, 1x1 ``out/2 -> out``) on
    ``cat[x, y1..yn]``; ``+ x`` when ``residual``.
    """

    def __init__(self,
                 in_chs: int,
                 mid_chs: int,
                 out_chs: int,
                 layer_num: int,
                 kernel_size: int = 3,
                 residual: bool = False,
                 light_block: bool = False,
                 use_lab: bool = False):
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList()
        for k in range(layer_num):
            c_in = in_chs if k == 0 else mid_chs
            if light_block:
                layer = LightConvBNAct(c_in, mid_chs, kernel_size, use_lab)
            else:
                layer = ConvBNAct(c_in, mid_chs, kernel_size, use_lab=use_lab)
            self.layers.append(layer)
        total_chs = in_chs + layer_num * mid_chs
        self.aggregation = nn.Sequential(
            ConvBNAct(total_chs, out_chs // 2, 1, use_lab=use_lab),
            ConvBNAct(out_chs // 2, out_chs, 1, use_lab=use_lab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        outs = [x]
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        x = self.aggregation(torch.cat(outs, dim=1))
        return x + identity if self.residual else x


class HGStage(nn.Module):
    """HG stage: optional ``downsample``, then ``blocks``.

    ``downsample`` is a depthwise 3x3 stride-2 ConvBNAct (no act/lab), or
    ``nn.Identity`` (no keys) for a stage without downsampling. Block 0 maps
    ``in -> out`` without residual, the others ``out -> out`` with residual.
    """

    def __init__(self,
                 in_chs: int,
                 mid_chs: int,
                 out_chs: int,
                 block_num: int,
                 layer_num: int,
                 downsample: bool = True,
                 light_block: bool = False,
                 kernel_size: int = 3,
                 use_lab: bool = False):
        super().__init__()
        if downsample:
            self.downsample = ConvBNAct(
                in_chs,
                in_chs,
                3,
                stride=2,
                groups=in_chs,
                use_act=False,
                use_lab=use_lab)
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[
            HGBlock(
                in_chs if j == 0 else out_chs,
                mid_chs,
                out_chs,
                layer_num,
                kernel_size=kernel_size,
                residual=j > 0,
                light_block=light_block,
                use_lab=use_lab) for j in range(block_num)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


@MODELS.register_module()
class HGNetV2(BaseModule):
    """HGNetV2 backbone of D-FINE (B0-B6).

    D-FINE uses B0 (N, S; ``use_lab=True``), B2 (M; ``use_lab=True``), B4 (L)
    and B5 (X); L/X freeze the stem and turn every BN into
    :class:`FrozenBatchNorm2d`.

    Args:
        arch (str): ``'B0'`` ... ``'B6'`` (rows of :attr:`arch_settings`).
        use_lab (bool): add a LearnableAffineBlock after each activation.
            Default False.
        out_indices (Sequence[int]): stages to return (0..3 = strides 4, 8, 16,
            32). Default (1, 2, 3).
        frozen_stem (bool): stop gradients of the stem parameters (official
            ``freeze_at=0, freeze_stem_only=True``). Like the official code
            this only sets ``requires_grad=False``; combine with
            ``freeze_norm``/``norm_eval`` to also fix BN statistics. Default
            False.
        frozen_stages (int): additionally stop gradients of stages
            ``0..frozen_stages`` (official ``freeze_stem_only=False``; unused
            by D-FINE). -1 = none. Default -1.
        freeze_norm (bool): replace every BatchNorm2d by
            :class:`FrozenBatchNorm2d` (official ``freeze_norm``). Default
            False.
        norm_eval (bool): keep the remaining BatchNorm layers in eval mode
            during training. Default False.
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained',
            checkpoint='weights/PPHGNetV2_B4_stage1.pth')`` to load an official
            ImageNet-pretrained file (keys without a ``backbone.`` prefix).
            Nothing is downloaded; a missing local file raises
            ``FileNotFoundError``.

    Input ``[B, 3, H, W]``; output: tuple of ``[B, C_i, H/s_i, W/s_i]`` for
    the stages in ``out_indices`` (high resolution first; ``s_i`` in 4, 8, 16,
    32 with ceil rounding).
    """

    # stem: (in, mid, out); stage: (in, mid, out, num_blocks, downsample,
    # light_block, kernel_size, layer_num)
    # yapf: disable
    arch_settings = {
        'B0': dict(stem=(3, 16, 16), stages=(
            (16, 16, 64, 1, False, False, 3, 3),
            (64, 32, 256, 1, True, False, 3, 3),
            (256, 64, 512, 2, True, True, 5, 3),
            (512, 128, 1024, 1, True, True, 5, 3))),
        'B1': dict(stem=(3, 24, 32), stages=(
            (32, 32, 64, 1, False, False, 3, 3),
            (64, 48, 256, 1, True, False, 3, 3),
            (256, 96, 512, 2, True, True, 5, 3),
            (512, 192, 1024, 1, True, True, 5, 3))),
        'B2': dict(stem=(3, 24, 32), stages=(
            (32, 32, 96, 1, False, False, 3, 4),
            (96, 64, 384, 1, True, False, 3, 4),
            (384, 128, 768, 3, True, True, 5, 4),
            (768, 256, 1536, 1, True, True, 5, 4))),
        'B3': dict(stem=(3, 24, 32), stages=(
            (32, 32, 128, 1, False, False, 3, 5),
            (128, 64, 512, 1, True, False, 3, 5),
            (512, 128, 1024, 3, True, True, 5, 5),
            (1024, 256, 2048, 1, True, True, 5, 5))),
        'B4': dict(stem=(3, 32, 48), stages=(
            (48, 48, 128, 1, False, False, 3, 6),
            (128, 96, 512, 1, True, False, 3, 6),
            (512, 192, 1024, 3, True, True, 5, 6),
            (1024, 384, 2048, 1, True, True, 5, 6))),
        'B5': dict(stem=(3, 32, 64), stages=(
            (64, 64, 128, 1, False, False, 3, 6),
            (128, 128, 512, 2, True, False, 3, 6),
            (512, 256, 1024, 5, True, True, 5, 6),
            (1024, 512, 2048, 2, True, True, 5, 6))),
        'B6': dict(stem=(3, 48, 96), stages=(
            (96, 96, 192, 2, False, False, 3, 6),
            (192, 192, 512, 3, True, False, 3, 6),
            (512, 384, 1024, 6, True, True, 5, 6),
            (1024, 768, 2048, 3, True, True, 5, 6))),
    }
    # yapf: enable
    strides = (4, 8, 16, 32)

    def __init__(self,
                 arch: str = 'B0',
                 use_lab: bool = False,
                 out_indices: Sequence[int] = (1, 2, 3),
                 frozen_stem: bool = False,
                 frozen_stages: int = -1,
                 freeze_norm: bool = False,
                 norm_eval: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if arch not in self.arch_settings:
            raise KeyError(f'HGNetV2: unknown arch {arch!r}; expected one of '
                           f'{sorted(self.arch_settings)}')
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i < 0 or i > 3 for i in out_indices):
            raise ValueError(
                'HGNetV2: out_indices must be a non-empty subset of '
                f'(0, 1, 2, 3), got {out_indices}')
        setting = self.arch_settings[arch]
        self.arch = arch
        self.use_lab = use_lab
        self.out_indices = out_indices
        self.frozen_stem = frozen_stem
        self.frozen_stages = frozen_stages
        self.freeze_norm = freeze_norm
        self.norm_eval = norm_eval
        self.out_channels = [setting['stages'][i][2] for i in out_indices]
        self.out_strides = [self.strides[i] for i in out_indices]

        self.stem = StemBlock(*setting['stem'], use_lab=use_lab)
        self.stages = nn.ModuleList()
        for (in_chs, mid_chs, out_chs, block_num, downsample, light_block,
             kernel_size, layer_num) in setting['stages']:
            self.stages.append(
                HGStage(in_chs, mid_chs, out_chs, block_num, layer_num,
                        downsample, light_block, kernel_size, use_lab))

        if freeze_norm:
            freeze_batch_norm2d(self)
        self._freeze_parameters()

    def _freeze_parameters(self) -> None:
        frozen = []
        if self.frozen_stem or self.frozen_stages >= 0:
            frozen.append(self.stem)
        frozen.extend(self.stages[:max(self.frozen_stages + 1, 0)])
        for module in frozen:
            for p in module.parameters():
                p.requires_grad = False

    def init_weights(self) -> None:
        """Apply ``init_cfg``; a missing ``Pretrained`` file fails clearly."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            ckpt = cfg.get('checkpoint')
            if ckpt is None:
                raise ValueError("HGNetV2: init_cfg type='Pretrained' needs a "
                                 "'checkpoint' path")
            if '://' not in str(ckpt) and not osp.isfile(ckpt):
                raise FileNotFoundError(
                    f'HGNetV2 ({self.arch}) pretrained checkpoint not found: '
                    f'{ckpt!r}. Nothing is downloaded at run time: put the '
                    f'official PPHGNetV2_{self.arch}_stage1.pth '
                    "(ImageNet-pretrained, keys without a 'backbone.' prefix) "
                    'there, or remove init_cfg.')
        super().init_weights()

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``x`` ``[B, 3, H, W]`` -> tuple of the ``out_indices`` maps."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
            if i == max(self.out_indices):
                break  # later stages would not contribute to any output
        return tuple(outs)
