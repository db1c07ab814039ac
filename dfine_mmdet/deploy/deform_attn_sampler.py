"""Deploy-time choice of the deformable-attention sampler (the ``*_gather``
deploy configs).

D-FINE's deformable attention samples its value maps bilinearly, by default
with ``F.grid_sample``, which exports as ONNX ``GridSample``. Some runtimes
lack that op (ncnn, RKNN, TFLite, TensorRT < 8.5) and some TensorRT releases
miscompile it (NVIDIA/TensorRT#4813: wrong detections with 10.14 and 11.1).
A deploy config can export the same model with
:func:`dfine_mmdet.models.layers.ms_deform_attn.grid_sample_gather` instead
(``floor``, index arithmetic and one row ``Gather`` per sampling call; no
``GridSample`` node), without touching the model config or the checkpoint::

    # dfine_mmdet extension key, read only while exporting
    deform_attn_sampler = 'gather'   # or 'grid_sample' (the default)

``configs/deploy/*_gather.py`` set it. Stock MMDeploy ignores unknown keys;
the rewriters below read it while ``dfine_mmdet`` is imported in the
exporting process (every deploy config imports it via ``custom_imports``).

What it covers:

* :class:`~dfine_mmdet.models.layers.ms_deform_attn.MSDeformableAttention`
  (D-FINE, and every model built on its decoder): its
  ``sample_bilinear`` call is rewritten, for all backends;
* mmcv's ``MultiScaleDeformableAttention`` (mmdet's Deformable DETR / DINO
  and their FDR variants in ``dfine_mmdet``): on CPU, mmcv computes it with
  ``multi_scale_deformable_attn_pytorch``, whose ``grid_sample`` calls
  become :func:`multi_scale_deformable_attn_gather`. (On CUDA mmcv calls its
  compiled op instead, which MMDeploy exports as its custom op
  ``mmdeploy::MMCVMultiScaleDeformableAttention``; this key does not change
  that path: export on CPU, as ``dfine_mmdet.deploy.export.export_onnx``
  does.)
"""
from typing import Optional

import torch
from mmdeploy.core import FUNCTION_REWRITER
from torch import Tensor

from ..models.layers.ms_deform_attn import SAMPLERS, grid_sample_gather

#: deploy-config key (dfine_mmdet extension) that selects the sampler
SAMPLER_KEY = 'deform_attn_sampler'


def deploy_sampler(deploy_cfg, default: Optional[str] = None) -> Optional[str]:
    """The sampler named by ``deploy_cfg[SAMPLER_KEY]``, else ``default``.

    Raises:
        ValueError: the key names no entry of
            :data:`~dfine_mmdet.models.layers.ms_deform_attn.SAMPLERS`.
    """
    sampler = None if deploy_cfg is None else deploy_cfg.get(SAMPLER_KEY)
    if sampler is None:
        return default
    if sampler not in SAMPLERS:
        raise ValueError(f'deploy config: {SAMPLER_KEY}={sampler!r}, '
                         f'expected one of {sorted(SAMPLERS)}')
    return sampler


@FUNCTION_REWRITER.register_rewriter(
    'dfine_mmdet.models.layers.ms_deform_attn.sample_bilinear')
def sample_bilinear__deploy(value: Tensor,
                            grid: Tensor,
                            sampler: str = 'grid_sample') -> Tensor:
    """``sample_bilinear`` with the deploy config's sampler, if it names
    one (else the module's own ``sampler``)."""
    ctx = FUNCTION_REWRITER.get_context()
    return ctx.origin_func(value, grid, deploy_sampler(ctx.cfg, sampler))


def multi_scale_deformable_attn_gather(value: Tensor,
                                       value_spatial_shapes: Tensor,
                                       sampling_locations: Tensor,
                                       attention_weights: Tensor) -> Tensor:
    """mmcv's ``multi_scale_deformable_attn_pytorch`` computed with
    :func:`grid_sample_gather` (same arguments, same result).

    Args:
        value (Tensor): ``[B, N, M, C]``, levels concatenated.
        value_spatial_shapes (Tensor): ``[L, 2]`` ``(H_l, W_l)``.
        sampling_locations (Tensor): ``[B, Q, M, L, P, 2]`` normalised
            ``(x, y)`` in ``[0, 1]``.
        attention_weights (Tensor): ``[B, Q, M, L, P]``.

    Returns:
        Tensor: ``[B, Q, M * C]``.
    """
    bs, _, num_heads, head_dims = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in value_spatial_shapes]
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, value_l in enumerate(value.split(sizes, dim=1)):
        h, w = (int(s) for s in value_spatial_shapes[level])
        # [B, H*W, M, C] -> [B*M, C, H, W]
        value_l = value_l.permute(0, 2, 3, 1).reshape(bs * num_heads,
                                                      head_dims, h, w)
        # [B, Q, M, P, 2] -> [B*M, Q, P, 2]
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(grid_sample_gather(value_l, grid_l))  # [B*M, C, Q, P]
    # [B, Q, M, L, P] -> [B*M, 1, Q, L*P]
    weights = attention_weights.transpose(1,
                                          2).reshape(bs * num_heads, 1,
                                                     num_queries,
                                                     num_levels * num_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return out.view(bs, num_heads * head_dims,
                    num_queries).transpose(1, 2).contiguous()


@FUNCTION_REWRITER.register_rewriter(
    'mmcv.ops.multi_scale_deform_attn.multi_scale_deformable_attn_pytorch')
def multi_scale_deformable_attn_pytorch__deploy(value, value_spatial_shapes,
                                                sampling_locations,
                                                attention_weights):
    """mmcv's pure-PyTorch multi-scale deformable attention, with the
    gather sampler when the deploy config selects it."""
    ctx = FUNCTION_REWRITER.get_context()
    if deploy_sampler(ctx.cfg, 'grid_sample') == 'gather':
        return multi_scale_deformable_attn_gather(value, value_spatial_shapes,
                                                  sampling_locations,
                                                  attention_weights)
    return ctx.origin_func(value, value_spatial_shapes, sampling_locations,
                           attention_weights)
