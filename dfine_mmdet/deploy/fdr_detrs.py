"""MMDeploy rewriters of mmdet's DETRs with FDR: ``DINOFDR`` and
``DeformableDETRFDR`` (end-to-end export).

* ``DINOFDR.forward`` / ``DeformableDETRFDR.forward``: the same export-time
  forward as D-FINE's (:func:`dfine_mmdet.deploy.dfine_detector.
  dfine__forward`: the four stages of ``DetectionTransformer.predict`` with
  the input tensor's ``(H, W)`` as ``img_shape`` / ``batch_input_shape``,
  no ``mark`` nodes), registered for these two detectors.
* ``DINOFDRHead.predict_by_feat`` (inherited by ``DeformableDETRFDRHead``):
  mmdet's DETR post-processing (``DeformableDETRHead._predict_by_feat_single``:
  sigmoid, top-k over ``Q x C``, ``label = index % C``, ``query = index //
  C``, boxes scaled to the input and **clamped to it**) batched with the
  same top-k function as D-FINE's graph
  (:func:`~dfine_mmdet.models.dense_heads.dfine_head.topk_detections`,
  which gathers along the query axis and so avoids MMDeploy's DETR head
  rewriter bug for batch > 1, open-mmlab/mmdeploy#2810).  Outputs ``dets``
  ``[B, K, 5]`` (xyxy in input pixels, score) and ``labels`` ``[B, K]``;
  ``/ scale_factor`` is done outside the graph by MMDeploy's
  ``End2EndModel``, as ``predict(rescale=True)`` does in PyTorch.

The deformable attention of these detectors is mmcv's
``MultiScaleDeformableAttention``, whose CPU path is
``multi_scale_deformable_attn_pytorch`` (``F.grid_sample``): it exports to
standard ``GridSample`` ops (:mod:`dfine_mmdet.deploy.symbolics`), so the
graph needs no MMDeploy custom-op library.  The export must run on CPU (as
MMDeploy's ``torch2onnx`` does); traced on CUDA, mmcv would take its CUDA
kernel, which MMDeploy maps to its custom op.
"""
from typing import List, Tuple

import torch
from mmdeploy.core import FUNCTION_REWRITER
from torch import Tensor

from dfine_mmdet.models.dense_heads.dfine_head import topk_detections
from .dfine_detector import dfine__forward

for _path in ('dfine_mmdet.models.detectors.dino_fdr.DINOFDR.forward',
              'dfine_mmdet.models.detectors.deformable_detr_fdr.'
              'DeformableDETRFDR.forward'):
    FUNCTION_REWRITER.register_rewriter(_path)(dfine__forward)


@FUNCTION_REWRITER.register_rewriter(
    'dfine_mmdet.models.dense_heads.dino_fdr_head.DINOFDRHead.'
    'predict_by_feat')
def dino_fdr_head__predict_by_feat(
        self,
        all_layers_cls_scores: Tensor,
        all_layers_bbox_preds: Tensor,
        batch_img_metas: List[dict],
        rescale: bool = True) -> Tuple[Tensor, Tensor]:
    """Export-time post-processing of the FDR DETR heads.

    Args:
        all_layers_cls_scores (Tensor): ``[L, B, Q, C]`` logits (only the
            last layer is used).
        all_layers_bbox_preds (Tensor): ``[L, B, Q, 4]`` normalised cxcywh.
        batch_img_metas (list[dict]): ``img_shape`` ``(H, W)`` of the input
            tensor (ints, or a tensor for dynamic H/W).
        rescale (bool): Ignored in the graph (see the module docstring).

    Returns:
        tuple[Tensor]: ``dets`` ``[B, K, 5]`` and ``labels`` ``[B, K]``,
        ``K = min(test_cfg.max_per_img, Q C)``.
    """
    num_queries = all_layers_cls_scores.shape[2]
    scores, labels, _, xyxy = topk_detections(
        all_layers_cls_scores[-1], all_layers_bbox_preds[-1],
        self.test_cfg.get('max_per_img', num_queries))
    img_shape = batch_img_metas[0]['img_shape']
    if isinstance(img_shape, Tensor):
        hw = img_shape.to(xyxy)
        whwh = torch.cat([hw.flip(0), hw.flip(0)]).view(1, 1, 4)
    else:
        img_h, img_w = img_shape[:2]
        whwh = xyxy.new_tensor([img_w, img_h, img_w, img_h]).view(1, 1, 4)
    # as DeformableDETRHead._predict_by_feat_single: clamp to the input
    boxes = torch.minimum((xyxy * whwh).clamp(min=0), whwh)
    dets = torch.cat([boxes, scores.unsqueeze(-1)], dim=-1)
    return dets, labels
