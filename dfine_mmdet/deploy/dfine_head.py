"""MMDeploy rewriter of ``DFINEHead.predict_by_feat``: batched top-k.

The top-k itself is :func:`dfine_mmdet.models.dense_heads.dfine_head.
topk_detections`, the same batched function the PyTorch path runs (the
official ``DFINEPostProcessor``: sigmoid, top-k over ``Q x C``, ``label =
index % C``, ``query = index // C``, gather along the query axis, no
clamping, threshold or NMS), so one graph serves any batch size and the
computation is written once.  What differs from eager mode is only the
output format: ``dets [B, K, 5]`` (xyxy in input-tensor pixels, score) and
``labels [B, K]``.  Mapping boxes to the original image (``/ scale_factor``)
is done outside the graph by MMDeploy's ``End2EndModel`` / SDK, exactly as
``predict(rescale=True)`` does in PyTorch.
"""
from typing import List, Tuple

import torch
from mmdeploy.core import FUNCTION_REWRITER
from torch import Tensor

from dfine_mmdet.models.dense_heads.dfine_head import topk_detections


@FUNCTION_REWRITER.register_rewriter(
    'dfine_mmdet.models.dense_heads.dfine_head.DFINEHead.predict_by_feat')
def dfine_head__predict_by_feat(self,
                                all_layers_cls_scores: Tensor,
                                all_layers_bbox_preds: Tensor,
                                batch_img_metas: List[dict],
                                rescale: bool = True) -> Tuple[Tensor, Tensor]:
    """Export-time post-processing.

    Args:
        all_layers_cls_scores (Tensor): ``[L, B, Q, C]`` logits (only the last
            layer is used).
        all_layers_bbox_preds (Tensor): ``[L, B, Q, 4]`` normalised cxcywh.
        batch_img_metas (list[dict]): ``img_shape`` ``(H, W)`` of the input
            tensor (ints, or a tensor for dynamic H/W), set by
            :func:`dfine_mmdet.deploy.dfine_detector.dfine__forward`.
        rescale (bool): Ignored in the graph (see the module docstring).

    Returns:
        tuple[Tensor]: ``dets`` ``[B, K, 5]`` and ``labels`` ``[B, K]``.
    """
    scores, labels, _, xyxy = topk_detections(
        all_layers_cls_scores[-1], all_layers_bbox_preds[-1],
        self.test_cfg.get('max_per_img', 300))
    img_shape = batch_img_metas[0]['img_shape']
    if isinstance(img_shape, Tensor):
        hw = img_shape.to(xyxy)
        whwh = torch.cat([hw.flip(0), hw.flip(0)]).view(1, 1, 4)
    else:
        img_h, img_w = img_shape[:2]
        whwh = xyxy.new_tensor([img_w, img_h, img_w, img_h]).view(1, 1, 4)
    dets = torch.cat([xyxy * whwh, scores.unsqueeze(-1)], dim=-1)
    return dets, labels
