"""GELAN blocks of the D-FINE hybrid encoder's cross-scale fusion (CCFF).

D-FINE keeps RT-DETR's hybrid encoder but replaces its CSPRepLayer fusion
blocks by YOLOv9's GELAN block (``RepNCSPELAN4``) and its 3x3 stride-2
downsampling convs by YOLOv10's ``SCDown`` (spatial-channel decoupled
downsampling).

The blocks are written here (rather than reused from MMDetection/MMCV) because
they must keep the **official sub-module names** (``conv``/``norm``,
``conv1``/``conv2``, ``bottlenecks``, ``cv1``..``cv4``) so that an official
``encoder.*`` checkpoint entry maps onto ours with a prefix rename only, and
because MMDetection has no RepVGG/GELAN block with this exact structure.

All blocks take and return feature maps of shape ``[B, C, H, W]``.
"""
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'build_activation', 'ConvNormLayer', 'VGGBlock', 'CSPLayer',
    'RepNCSPELAN4', 'SCDown'
]

_ACTIVATIONS = {
    'silu': nn.SiLU,
    'swish': nn.SiLU,
    'relu': nn.ReLU,
    'gelu': nn.GELU,
    'leaky_relu': nn.LeakyReLU,
    'hardsigmoid': nn.Hardsigmoid,
}


def build_activation(act: Union[str, nn.Module, None]) -> nn.Module:
    """Activation from its official name (``'silu'``, ``'gelu'``, ...).

    ``None`` gives ``nn.Identity``; an ``nn.Module`` is returned unchanged.
    """
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    name = str(act).lower()
    if name not in _ACTIVATIONS:
        raise ValueError(f'unknown activation {act!r}; expected one of '
                         f'{sorted(_ACTIVATIONS)} or None')
    return _ACTIVATIONS[name]()


def _fuse_conv_bn(conv: nn.Conv2d, norm: nn.BatchNorm2d):
    """Kernel and bias of one conv equal to eval-mode ``norm(conv(x))``."""
    std = (norm.running_var + norm.eps).sqrt()
    t = norm.weight / std
    kernel = conv.weight * t.reshape(-1, 1, 1, 1)
    bias = norm.bias - norm.running_mean * t
    if conv.bias is not None:
        bias = bias + conv.bias * t
    return kernel, bias


class ConvNormLayer(nn.Module):
    """Conv2d -> BatchNorm2d -> activation (official ``ConvNormLayer_fuse``).

    Keys: ``conv.weight`` and
    ``norm.{weight,bias,running_mean,running_var,num_batches_tracked}``.
    :meth:`switch_to_deploy` folds the BN into a biased conv named
    ``conv_bn_fused`` (as the official ``convert_to_deploy``), valid for
    inference only.

    Args:
        ch_in (int): input channels.
        ch_out (int): output channels.
        kernel_size (int): square kernel size.
        stride (int): stride. Default 1.
        groups (int): conv groups (``ch_in`` for depthwise). Default 1.
        padding (int, optional): defaults to ``(kernel_size - 1) // 2``.
        bias (bool): conv bias. Default False.
        act (str | nn.Module | None): activation after the norm. Default None.
    """

    def __init__(self,
                 ch_in: int,
                 ch_out: int,
                 kernel_size: int,
                 stride: int = 1,
                 groups: int = 1,
                 padding: Optional[int] = None,
                 bias: bool = False,
                 act: Union[str, nn.Module, None] = None):
        super().__init__()
        padding = (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(
            ch_in,
            ch_out,
            kernel_size,
            stride,
            padding=padding,
            groups=groups,
            bias=bias)
        self.norm = nn.BatchNorm2d(ch_out)
        self.act = build_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, 'conv_bn_fused'):
            return self.act(self.conv_bn_fused(x))
        return self.act(self.norm(self.conv(x)))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Replace ``conv`` + ``norm`` by one biased conv ``conv_bn_fused``."""
        if hasattr(self, 'conv_bn_fused'):
            return
        conv = self.conv
        kernel, bias = _fuse_conv_bn(conv, self.norm)
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            padding=conv.padding,
            groups=conv.groups,
            bias=True).to(kernel)
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
        self.conv_bn_fused = fused
        del self.conv
        del self.norm


class VGGBlock(nn.Module):
    """RepVGG-style block: ``act(BN(conv3x3(x)) + BN(conv1x1(x)))``.

    Keys: ``conv1.{conv,norm}`` (3x3) and ``conv2.{conv,norm}`` (1x1).
    :meth:`switch_to_deploy` re-parameterises both branches into one biased
    3x3 conv named ``conv`` (official ``convert_to_deploy``).

    Args:
        ch_in (int): input channels.
        ch_out (int): output channels.
        act (str | nn.Module | None): activation after the sum. Default
            ``'silu'`` (the value every D-FINE config uses).
    """

    def __init__(self,
                 ch_in: int,
                 ch_out: int,
                 act: Union[str, nn.Module, None] = 'silu'):
        super().__init__()
        self.ch_in = ch_in
        self.ch_out = ch_out
        self.conv1 = ConvNormLayer(ch_in, ch_out, 3, 1, padding=1)
        self.conv2 = ConvNormLayer(ch_in, ch_out, 1, 1, padding=0)
        self.act = build_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, 'conv'):
            y = self.conv(x)
        else:
            y = self.conv1(x) + self.conv2(x)
        return self.act(y)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold both branches into one biased 3x3 conv ``conv``."""
        if hasattr(self, 'conv'):
            return
        k3, b3 = _fuse_conv_bn(self.conv1.conv, self.conv1.norm)
        k1, b1 = _fuse_conv_bn(self.conv2.conv, self.conv2.norm)
        conv = nn.Conv2d(self.ch_in, self.ch_out, 3, 1, padding=1).to(k3)
        conv.weight.copy_(k3 + F.pad(k1, [1, 1, 1, 1]))
        conv.bias.copy_(b3 + b1)
        self.conv = conv
        del self.conv1
        del self.conv2


class CSPLayer(nn.Module):
    """Cross-stage-partial layer with ``num_blocks`` VGGBlock bottlenecks.

    ``out = conv3(bottlenecks(conv1(x)) + conv2(x))`` where ``conv1``/``conv2``
    are 1x1 ConvNormLayers (with ``act``) to
    ``hidden = int(out_channels * expansion)`` channels and ``conv3`` is a 1x1
    ConvNormLayer back to ``out_channels`` (``nn.Identity`` when
    ``hidden == out_channels``, the only case D-FINE uses).

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        num_blocks (int): number of VGGBlocks. Default 3.
        expansion (float): hidden-channel ratio. Default 1.0.
        bias (bool): conv bias of the 1x1 convs. Default False.
        act (str | None): activation. Default ``'silu'``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 num_blocks: int = 3,
                 expansion: float = 1.0,
                 bias: bool = False,
                 act: Union[str, None] = 'silu'):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvNormLayer(
            in_channels, hidden, 1, 1, bias=bias, act=act)
        self.conv2 = ConvNormLayer(
            in_channels, hidden, 1, 1, bias=bias, act=act)
        self.bottlenecks = nn.Sequential(
            *[VGGBlock(hidden, hidden, act=act) for _ in range(num_blocks)])
        if hidden != out_channels:
            self.conv3 = ConvNormLayer(
                hidden, out_channels, 1, 1, bias=bias, act=act)
        else:
            self.conv3 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class RepNCSPELAN4(nn.Module):
    """GELAN block (YOLOv9 ``RepNCSPELAN4``), D-FINE's CCFF fusion block.

    ``cv1`` (1x1, c1->c3) output is split into two halves of ``c3 // 2``
    channels ``[y0, y1]``; ``y2 = cv2(y1)`` and ``y3 = cv3(y2)``, where
    ``cv2``/``cv3`` are Sequential(CSPLayer(., c4, n), 3x3 ConvNormLayer
    c4->c4); the output is ``cv4(cat[y0, y1, y2, y3])`` (1x1,
    ``c3 + 2*c4 -> c2``). All convs use ``act``.

    In the hybrid encoder: ``c1 = 2*hd``, ``c2 = hd``, ``c3 = 2*hd``,
    ``c4 = round(expansion * hd // 2)``, ``n = round(3 * depth_mult)``.

    Args:
        c1 (int): input channels.
        c2 (int): output channels.
        c3 (int): channels after ``cv1`` (split in two halves).
        c4 (int): channels of the ``cv2``/``cv3`` branches.
        n (int): VGGBlocks per CSPLayer. Default 3.
        bias (bool): conv bias. Default False.
        act (str | None): activation. Default ``'silu'``.
    """

    def __init__(self,
                 c1: int,
                 c2: int,
                 c3: int,
                 c4: int,
                 n: int = 3,
                 bias: bool = False,
                 act: Union[str, None] = 'silu'):
        super().__init__()
        self.c = c3 // 2
        self.cv1 = ConvNormLayer(c1, c3, 1, 1, bias=bias, act=act)
        self.cv2 = nn.Sequential(
            CSPLayer(c3 // 2, c4, n, 1, bias=bias, act=act),
            ConvNormLayer(c4, c4, 3, 1, bias=bias, act=act))
        self.cv3 = nn.Sequential(
            CSPLayer(c4, c4, n, 1, bias=bias, act=act),
            ConvNormLayer(c4, c4, 3, 1, bias=bias, act=act))
        self.cv4 = ConvNormLayer(c3 + 2 * c4, c2, 1, 1, bias=bias, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).split((self.c, self.c), 1))
        y.append(self.cv2(y[-1]))
        y.append(self.cv3(y[-1]))
        return self.cv4(torch.cat(y, 1))


class SCDown(nn.Module):
    """Spatial-channel decoupled downsampling (YOLOv10 ``SCDown``).

    ``cv1``: 1x1 ConvNormLayer ``c1 -> c2`` (no activation), then ``cv2``:
    depthwise ``k x k`` stride-``s`` ConvNormLayer (groups ``c2``, no
    activation). For ``k=3, s=2``:
    ``[B, c1, H, W] -> [B, c2, ceil(H/2), ceil(W/2)]``.

    Args:
        c1 (int): input channels.
        c2 (int): output channels.
        k (int): depthwise kernel size.
        s (int): depthwise stride.
    """

    def __init__(self, c1: int, c2: int, k: int, s: int):
        super().__init__()
        self.cv1 = ConvNormLayer(c1, c2, 1, 1)
        self.cv2 = ConvNormLayer(c2, c2, k, s, groups=c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))
