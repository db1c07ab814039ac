"""FLOP counting of D-FINE and MMDetection detectors with MMEngine's
``FlopAnalyzer``.

MMEngine's analyzer (fvcore convention: one multiply-add = one "flop") has
handles for matmul/conv/linear/norm ops but none for ``aten::grid_sampler``, so
deformable attention would count as zero. Both D-FINE's
:class:`~dfine_mmdet.models.layers.ms_deform_attn.MSDeformableAttention` and
mmcv's ``MultiScaleDeformableAttention`` on CPU
(``multi_scale_deformable_attn_pytorch``) sample values with
``F.grid_sample``; :func:`grid_sampler_flop` counts it.

Counting rule (``grid_sampler_flop``): bilinear sampling reads 4 neighbours
per output element and takes a weighted sum, i.e. 4 multiply-adds per output
element per channel: ``4 * N * C * H_out * W_out`` (nearest: 1 per element).
The attention-weighted sum after sampling (``mul`` + ``sum``) is element-wise
and, like every element-wise op in MMEngine's convention, is not counted.
Ops without a handle are reported by :func:`count_flops` (``unsupported``).
"""
from typing import Any, Dict, List, Tuple

import torch
import torch.nn as nn


def _shape(val) -> List[int]:
    """Shape of a JIT value (``torch._C.Value``) whose type is a tensor."""
    return list(val.type().sizes())


def grid_sampler_flop(inputs: List[Any], outputs: List[Any]) -> int:
    """Multiply-adds of
    ``aten::grid_sampler(input, grid, mode, padding, align)``.

    ``outputs[0]`` has shape ``[N, C, H_out, W_out]``; ``inputs[2]`` is the
    interpolation mode (0 bilinear, 1 nearest, 2 bicubic).
    """
    out = _shape(outputs[0])
    numel = 1
    for d in out:
        numel *= d
    mode = inputs[2].toIValue() if len(inputs) > 2 else 0
    taps = {0: 4, 1: 1, 2: 16}.get(mode, 4)
    return taps * numel


#: extra op handles registered on top of MMEngine's defaults
EXTRA_HANDLES = {
    'aten::grid_sampler': grid_sampler_flop,
}


def count_flops(model: nn.Module, inputs: Tuple[torch.Tensor,
                                                ...]) -> Dict[str, Any]:
    """Total multiply-adds of ``model(*inputs)`` and the ops left uncounted.

    Returns:
        ``dict(flops=int, grid_sampler_flops=int, unsupported={op: calls})``.
    """
    from mmengine.analysis import FlopAnalyzer

    analyzer = FlopAnalyzer(model, inputs).set_op_handle(**EXTRA_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    total = analyzer.total()
    by_op = analyzer.by_operator()
    return dict(
        flops=int(total),
        grid_sampler_flops=int(by_op.get('grid_sampler', 0)),
        unsupported={
            k: int(v)
            for k, v in analyzer.unsupported_ops().items()
        })
