"""MMDeploy rewriter of ``DFINEHead.predict_by_feat``: batched top-k.

PyTorch post-processing (``DFINEHead._predict_by_feat_single``, the official
``DFINEPostProcessor``) loops over images. In the exported graph the same
computation runs batched, so one graph serves any batch size:

    scores, index = sigmoid(logits[B, Q, C]).flatten(1).topk(K)  # [B, K]
    labels = index % C;  query = index // C
    boxes  = gather(pred_boxes[B, Q, 4], dim=1, query)           # per image
    dets   = [cxcywh_to_xyxy(boxes) * (W, H, W, H), scores]      # [B, K, 5]

The gather runs along the query axis of each image. It never flattens the
batch into the index, which is what breaks MMDeploy's DETR head rewriter for
``K < Q`` (open-mmlab/mmdeploy#2810). As in the official model there is no
clamping, no threshold and no NMS. Boxes are in input-tensor pixels; mapping
them to the original image (``/ scale_factor``) is done outside the graph by
MMDeploy's ``End2EndModel`` / SDK, exactly as ``predict(rescale=True)`` does
in PyTorch.
"""
from typing import List, Tuple

import torch
from mmdeploy.core import FUNCTION_REWRITER
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor


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
    cls_scores = all_layers_cls_scores[-1]
    bbox_preds = all_layers_bbox_preds[-1]
    num_queries, num_classes = int(cls_scores.shape[1]), int(
        cls_scores.shape[2])
    max_per_img = min(
        int(self.test_cfg.get('max_per_img', 300)), num_queries * num_classes)

    scores, index = cls_scores.sigmoid().flatten(1).topk(max_per_img, dim=1)
    labels = index % num_classes
    query_index = index // num_classes
    boxes = bbox_preds.gather(1, query_index.unsqueeze(-1).expand(-1, -1, 4))

    xyxy = bbox_cxcywh_to_xyxy(boxes)
    img_shape = batch_img_metas[0]['img_shape']
    if isinstance(img_shape, Tensor):
        hw = img_shape.to(xyxy)
        whwh = torch.cat([hw.flip(0), hw.flip(0)]).view(1, 1, 4)
    else:
        img_h, img_w = img_shape[:2]
        whwh = xyxy.new_tensor([img_w, img_h, img_w, img_h]).view(1, 1, 4)
    dets = torch.cat([xyxy * whwh, scores.unsqueeze(-1)], dim=-1)
    return dets, labels
