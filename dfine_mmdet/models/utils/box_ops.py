"""Box conversion of the official D-FINE ``box_ops`` that mmdet lacks."""
import torch
from torch import Tensor


def bbox_cxcywh_to_xyxy_clamped(boxes: Tensor) -> Tensor:
    """``(cx, cy, w, h) -> (x1, y1, x2, y2)`` with ``w, h`` clamped at 0.

    This is the official D-FINE ``box_cxcywh_to_xyxy``: a predicted box with a
    negative width becomes a zero-width box at its centre (mmdet's
    ``bbox_cxcywh_to_xyxy`` does not clamp).  Used by the Hungarian matching
    cost, the losses and the denoising box noise.

    Args:
        boxes (Tensor): Boxes of shape (..., 4), ``(cx, cy, w, h)``.

    Returns:
        Tensor: Boxes of shape (..., 4), ``(x1, y1, x2, y2)``.
    """
    cx, cy, w, h = boxes.unbind(-1)
    half_w = 0.5 * w.clamp(min=0.0)
    half_h = 0.5 * h.clamp(min=0.0)
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h],
                       dim=-1)
