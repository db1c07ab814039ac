"""D-FINE detection head: per-layer classification / FDR branches, the FDR
box coder, matching and losses, and the official post-processing.

Branches (all hold official weights; see the key table in
:mod:`dfine_mmdet.checkpoint.official`):

* ``cls_branches[i]``: Linear ``D -> C`` (class logits of decoder layer i);
* ``lqe_layers[i]``: Location Quality Estimator added to the logits of layer i;
* ``reg_branches[i]``: MLP ``D -> D -> D -> 4 (reg_max + 1)`` predicting the
  residual corner logits of Fine-grained Distribution Refinement (FDR, paper
  Eq. 5); the decoder calls them inside its loop (like DINO's
  ``reg_branches``);
* ``pre_reg_branch``: MLP ``D -> 4`` on layer 0 that yields the fixed FDR
  reference box;
* ``enc_cls_branch`` / ``enc_reg_branch``: the two-stage query-selection heads
  applied to the encoder memory (the detector calls them in ``pre_decoder``).

The head owns ``bbox_coder`` (:class:`FDRBBoxCoder`; the decoder decodes its
corners with it), ``assigner``, ``go_lsd_assigner`` and the loss modules,
all config fields; the matching / GO-LSD / denoising loss computation is
:class:`~dfine_mmdet.models.dense_heads.go_lsd_loss.GOLSDLossMixin`.  Method
layout as mmdet's DETR heads: ``loss`` -> ``loss_by_feat`` ->
:meth:`~GOLSDLossMixin.go_lsd_loss` (one loop over the supervision plan,
matching and denoising parts), ``predict`` -> ``predict_by_feat`` (batched
top-k of :func:`topk_detections`, also used by the MMDeploy rewriter).

Box formats: the decoder predicts normalised ``(cx, cy, w, h)`` relative to
the network input tensor; :meth:`DFINEHead.predict_by_feat` returns
``(x1, y1, x2, y2)`` pixels of the original image.
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import SampleList
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh,
                                   get_box_tensor)
from mmdet.utils import ConfigType, InstanceList, OptConfigType
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..layers.lqe import LQE
from ..utils import MLP
from .go_lsd_loss import GOLSDLossMixin
from .supervision_plan import BoxPredictions, FDRPredictions


def _prior_bias(prob: float) -> float:
    """Logit of ``prob`` (focal-loss style prior, -4.595 for 0.01)."""
    return float(-math.log((1 - prob) / prob))


def input_size_wh(img_meta: dict) -> Tuple[int, int]:
    """``(W, H)`` of the network input that the normalised boxes refer to.

    D-FINE has no padding mask: its anchors and sampling grids span the whole
    batch tensor, so boxes are normalised by ``batch_input_shape`` (equal to
    ``img_shape`` when nothing is padded, as in the official fixed-size
    pipeline).
    """
    h, w = img_meta.get('batch_input_shape', img_meta['img_shape'])[:2]
    return int(w), int(h)


def topk_detections(cls_scores: Tensor, bbox_preds: Tensor,
                    max_per_img: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Official D-FINE post-processing, batched (eager and exported graph).

    ``scores = sigmoid(logits)`` flattened over ``Q x C`` per image, top-k
    (k = ``min(max_per_img, Q C)``, sorted descending), ``label = index %
    C``, ``query = index // C``; no threshold, no NMS, no clamping (as the
    official ``DFINEPostProcessor``).  The box gather runs along the query
    axis of each image and never flattens the batch into the index (which is
    what breaks MMDeploy's DETR head rewriter for ``K < Q``,
    open-mmlab/mmdeploy#2810), so one exported graph serves any batch size.

    Args:
        cls_scores (Tensor): ``[B, Q, C]`` logits.
        bbox_preds (Tensor): ``[B, Q, 4]`` normalised cxcywh.
        max_per_img (int): ``K``.

    Returns:
        tuple[Tensor]: ``scores`` ``[B, K]``, ``labels`` ``[B, K]``,
        ``query_index`` ``[B, K]`` and ``bboxes`` ``[B, K, 4]`` normalised
        xyxy.
    """
    num_queries, num_classes = int(cls_scores.shape[1]), int(
        cls_scores.shape[2])
    k = min(int(max_per_img), num_queries * num_classes)
    scores, index = cls_scores.sigmoid().flatten(1).topk(k, dim=1)
    labels = index % num_classes
    query_index = index // num_classes
    boxes = bbox_preds.gather(1, query_index.unsqueeze(-1).expand(-1, -1, 4))
    return scores, labels, query_index, bbox_cxcywh_to_xyxy(boxes)


@MODELS.register_module()
class DFINEHead(GOLSDLossMixin, BaseModule):
    """Head of D-FINE (mmdet 3.x ``DINOHead`` counterpart).

    Args:
        num_classes (int): Number of classes ``C`` (80 COCO, 366 for the
            official Objects365 checkpoints).
        embed_dims (int): Decoder width ``D``. Default 256.  Filled in from
            the decoder by :class:`DFINE`.
        num_pred_layer (int): Number of decoder layers ``L``. Default 6.
            Filled in from ``decoder.num_layers`` by :class:`DFINE`.
        lqe_cfg (dict): ``k``, ``hidden_dim``, ``num_layers`` of the LQE.
        activation (str): Activation of the LQE MLPs. Default 'relu'.
            Filled in from ``decoder.activation`` by :class:`DFINE`.
        mlp_act (str): Activation of the box / corner MLPs. Default 'relu'.
            Filled in from ``decoder.mlp_act`` by :class:`DFINE`.
        bbox_coder (dict): FDR coder (``FDRBBoxCoder``: ``reg_max`` (bins
            per edge - 1, the corner branches output ``4 (reg_max + 1)``),
            ``reg_scale``, ``up``); the one place these are set, the decoder
            and the LQE get them from here.
        assigner (dict): One-to-one matcher (``DFINEHungarianAssigner``).
        go_lsd_assigner (dict): Union of the matches (``GOLSDAssigner``).
        loss_cls (dict): Classification loss (``DFINEVarifocalLoss``, term
            ``loss_vfl``; a label-only loss such as ``FocalLoss`` gives the
            term ``loss_cls``).
        loss_bbox (dict): L1 box loss (``loss_bbox``).
        loss_iou (dict): GIoU loss (term ``loss_giou``).
        loss_fgl (dict): ``FineGrainedLocalizationLoss`` (``dict()`` = off).
        loss_ddf (dict): ``DecoupledDistillationFocalLoss`` (``dict()`` =
            off).
        ddf_ref_batch_size (int): DDF balance constant. Default 8.
        train_cfg (dict, optional): Unused (mmdet interface).
        test_cfg (dict, optional): ``max_per_img`` (default 300) detections
            per image after the top-k over ``Q x C`` scores.
        init_cfg (dict, optional): mmengine init config.

    The matching / loss defaults are the official D-FINE settings.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int = 256,
                 num_pred_layer: int = 6,
                 lqe_cfg: ConfigType = dict(k=4, hidden_dim=64, num_layers=2),
                 activation: str = 'relu',
                 mlp_act: str = 'relu',
                 bbox_coder: ConfigType = dict(type='FDRBBoxCoder'),
                 assigner: ConfigType = dict(
                     type='DFINEHungarianAssigner',
                     cost_class=2.0,
                     cost_bbox=5.0,
                     cost_giou=2.0,
                     alpha=0.25,
                     gamma=2.0),
                 go_lsd_assigner: ConfigType = dict(type='GOLSDAssigner'),
                 loss_cls: ConfigType = dict(
                     type='DFINEVarifocalLoss',
                     alpha=0.75,
                     gamma=2.0,
                     loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='L1Loss', loss_weight=5.0),
                 loss_iou: ConfigType = dict(type='GIoULoss', loss_weight=2.0),
                 loss_fgl: ConfigType = dict(
                     type='FineGrainedLocalizationLoss', loss_weight=0.15),
                 loss_ddf: ConfigType = dict(
                     type='DecoupledDistillationFocalLoss',
                     temperature=5.0,
                     loss_weight=1.5),
                 ddf_ref_batch_size: int = 8,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = dict(max_per_img=300),
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_pred_layer = num_pred_layer
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg if test_cfg is not None else dict(
            max_per_img=300)
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.assigner = TASK_UTILS.build(assigner)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self._init_go_lsd_losses(go_lsd_assigner, loss_fgl, loss_ddf,
                                 ddf_ref_batch_size)
        num_corners = 4 * (self.reg_max + 1)
        self.cls_branches = nn.ModuleList([
            nn.Linear(embed_dims, num_classes) for _ in range(num_pred_layer)
        ])
        self.reg_branches = nn.ModuleList([
            MLP(embed_dims, embed_dims, num_corners, 3, act=mlp_act)
            for _ in range(num_pred_layer)
        ])
        self.lqe_layers = nn.ModuleList([
            LQE(self.reg_max, act=activation, **lqe_cfg)
            for _ in range(num_pred_layer)
        ])
        self.pre_reg_branch = MLP(embed_dims, embed_dims, 4, 3, act=mlp_act)
        self.enc_cls_branch = nn.Linear(embed_dims, num_classes)
        self.enc_reg_branch = MLP(embed_dims, embed_dims, 4, 3, act=mlp_act)
        self._init_branches()

    def _init_branches(self) -> None:
        """Official init: class biases at prior 0.01, last layer of every box
        / corner branch zero (start at the reference box)."""
        bias = _prior_bias(0.01)
        for cls_branch in list(self.cls_branches) + [self.enc_cls_branch]:
            nn.init.constant_(cls_branch.bias, bias)
        for reg in list(self.reg_branches) + [
                self.pre_reg_branch, self.enc_reg_branch
        ]:
            nn.init.constant_(reg.layers[-1].weight, 0.)
            nn.init.constant_(reg.layers[-1].bias, 0.)

    def init_weights(self) -> None:
        super().init_weights()
        self._init_branches()

    # ------------------------------------------------------------------ #
    # forward
    # ------------------------------------------------------------------ #
    def layer_logits(self, layer_id: int, hidden_state: Tensor,
                     pred_corners: Tensor) -> Tensor:
        """Class logits of one decoder layer: ``cls_branch + LQE``.

        Args:
            layer_id (int): Decoder layer index.
            hidden_state (Tensor): ``[B, Q, D]``.
            pred_corners (Tensor): ``[B, Q, 4 (reg_max + 1)]``.

        Returns:
            Tensor: ``[B, Q, C]``.
        """
        return self.lqe_layers[layer_id](
            self.cls_branches[layer_id](hidden_state), pred_corners)

    def forward(self, hidden_states: Tensor, pred_boxes: Tensor,
                pred_corners: Tensor, **kwargs) -> Tuple[Tensor, ...]:
        """Per-layer predictions.

        Args:
            hidden_states (Tensor): ``[L', B, Q, D]`` decoder layer outputs.
            pred_boxes (Tensor): ``[L', B, Q, 4]`` FDR boxes, normalised
                cxcywh (computed by the decoder loop).
            pred_corners (Tensor): ``[L', B, Q, 4 (reg_max + 1)]`` corner
                logits.
            **kwargs: Other outputs of the transformer (ignored).

        Returns:
            tuple[Tensor]: ``all_layers_cls_scores`` ``[L', B, Q, C]``
            (logits incl. LQE), ``all_layers_bbox_preds`` ``[L', B, Q, 4]``
            (normalised cxcywh) and ``all_layers_corners`` ``[L', B, Q,
            4 (reg_max + 1)]``.  At inference ``L' = eval_idx + 1`` and the
            last entry is the official model's output.
        """
        logits = torch.stack([
            self.layer_logits(i, hidden_states[i], pred_corners[i])
            for i in range(hidden_states.shape[0])
        ])
        return logits, pred_boxes, pred_corners

    # ------------------------------------------------------------------ #
    # inference
    # ------------------------------------------------------------------ #
    def predict(self,
                hidden_states: Tensor,
                pred_boxes: Tensor,
                pred_corners: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True,
                **kwargs) -> InstanceList:
        """Detections from the last computed decoder layer.

        Only the last layer's logits are computed (the official eval path).

        Returns:
            list[:obj:`InstanceData`]: Per image ``scores`` [K], ``labels``
            [K] (0..C-1), ``bboxes`` [K, 4] xyxy and ``query_index`` [K]
            (the decoder query each detection comes from), K =
            ``max_per_img``.
        """
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        last = hidden_states.shape[0] - 1
        cls_scores = self.layer_logits(last, hidden_states[last],
                                       pred_corners[last])
        return self.predict_by_feat(cls_scores[None], pred_boxes[last][None],
                                    batch_img_metas, rescale)

    def predict_by_feat(self,
                        all_layers_cls_scores: Tensor,
                        all_layers_bbox_preds: Tensor,
                        batch_img_metas: List[dict],
                        rescale: bool = True) -> InstanceList:
        """Official D-FINE post-processing on the last layer.

        :func:`topk_detections` (batched; the MMDeploy rewriter calls the
        same function).  Boxes are scaled from normalised cxcywh to
        xyxy pixels of the network input, then divided by mmdet's
        ``scale_factor`` when ``rescale`` (original-image pixels, like
        ``DETRHead``).

        Args:
            all_layers_cls_scores (Tensor): ``[L, B, Q, C]`` logits.
            all_layers_bbox_preds (Tensor): ``[L, B, Q, 4]`` cxcywh.
            batch_img_metas (list[dict]): Meta info of each image.
            rescale (bool): Map to the original image. Default True.

        Returns:
            list[:obj:`InstanceData`]
        """
        scores, labels, query_index, bboxes = topk_detections(
            all_layers_cls_scores[-1], all_layers_bbox_preds[-1],
            self.test_cfg.get('max_per_img', 300))
        result_list = []
        for i, img_meta in enumerate(batch_img_metas):
            w, h = input_size_wh(img_meta)
            img_bboxes = bboxes[i] * bboxes.new_tensor([w, h, w, h])
            if rescale and 'scale_factor' in img_meta:
                img_bboxes = img_bboxes / img_bboxes.new_tensor(
                    img_meta['scale_factor']).repeat((1, 2))
            results = InstanceData()
            results.bboxes = img_bboxes
            results.scores = scores[i]
            results.labels = labels[i]
            results.query_index = query_index[i]
            result_list.append(results)
        return result_list

    # ------------------------------------------------------------------ #
    # training
    # ------------------------------------------------------------------ #
    @staticmethod
    def get_targets(batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict]) -> List[Dict[str, Tensor]]:
        """Official-format targets: per image ``labels`` int64 [n] and
        ``boxes`` [n, 4] normalised cxcywh (by the network input size,
        :func:`input_size_wh`).  Also the denoising queries' source."""
        if len(batch_gt_instances) != len(batch_img_metas):
            raise ValueError(f'{len(batch_gt_instances)} gt_instances for '
                             f'{len(batch_img_metas)} images')
        targets = []
        for gt, img_meta in zip(batch_gt_instances, batch_img_metas):
            w, h = input_size_wh(img_meta)
            boxes = get_box_tensor(gt.bboxes).float()
            boxes = bbox_xyxy_to_cxcywh(boxes) / boxes.new_tensor([w, h, w, h])
            targets.append(dict(labels=gt.labels.long(), boxes=boxes))
        return targets

    def loss(self,
             hidden_states: Tensor,
             pred_boxes: Tensor,
             pred_corners: Tensor,
             ref_points: Tensor,
             pre_boxes: Tensor,
             enc_topk_logits: Tensor,
             enc_topk_bboxes: Tensor,
             batch_data_samples: SampleList,
             dn_meta: Optional[dict] = None,
             **kwargs) -> Dict[str, Tensor]:
        """Forward the branches on the decoder output and compute the losses
        (``DINOHead.loss`` counterpart).

        Args:
            hidden_states, pred_boxes, pred_corners (Tensor): ``[L, B, T+Q,
                ...]`` decoder outputs (see
                :meth:`DFINETransformerDecoder.forward`).
            ref_points (Tensor): ``[B, T+Q, 4]`` fixed FDR reference boxes.
            pre_boxes (Tensor): ``[B, T+Q, 4]`` layer-0 pre-head boxes.
            enc_topk_logits (Tensor): ``[B, Q, C]`` encoder top-k logits.
            enc_topk_bboxes (Tensor): ``[B, Q, 4]`` their boxes (cxcywh).
            batch_data_samples (list[:obj:`DetDataSample`]): With
                ``gt_instances``.
            dn_meta (dict, optional): Denoising meta (``dn_num_split``,
                ``dn_num_group``, ``dn_positive_idx``); ``None`` = no
                denoising queries (``T = 0``).
            **kwargs: Other transformer outputs (ignored).

        Returns:
            dict[str, Tensor]: Weighted losses keyed by the official term
            names (``loss_vfl``, ``loss_bbox_aux_0``, ``loss_fgl_dn_2``, ...).
        """
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        logits, boxes, corners = self(hidden_states, pred_boxes, pred_corners)
        pre_logits = self.cls_branches[0](hidden_states[0])
        return self.loss_by_feat(logits, boxes, corners, ref_points,
                                 pre_logits, pre_boxes, enc_topk_logits,
                                 enc_topk_bboxes, batch_gt_instances,
                                 batch_img_metas, dn_meta)

    def loss_by_feat(self,
                     all_layers_cls_scores: Tensor,
                     all_layers_bbox_preds: Tensor,
                     all_layers_corners: Tensor,
                     ref_points: Tensor,
                     pre_cls_scores: Tensor,
                     pre_bbox_preds: Tensor,
                     enc_cls_scores: Tensor,
                     enc_bbox_preds: Tensor,
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     dn_meta: Optional[dict] = None) -> Dict[str, Tensor]:
        """Losses of the matching and, with ``dn_meta``, the denoising part
        (:meth:`GOLSDLossMixin.go_lsd_loss`).

        The denoising queries (first ``dn_num_split[0]`` of the ``T+Q``
        queries) are split off (:meth:`split_outputs`).

        Args:
            all_layers_cls_scores (Tensor): ``[L, B, T+Q, C]`` logits.
            all_layers_bbox_preds (Tensor): ``[L, B, T+Q, 4]`` cxcywh.
            all_layers_corners (Tensor): ``[L, B, T+Q, 4 (reg_max + 1)]``.
            ref_points (Tensor): ``[B, T+Q, 4]``.
            pre_cls_scores (Tensor): ``[B, T+Q, C]`` layer-0 logits without
                LQE.
            pre_bbox_preds (Tensor): ``[B, T+Q, 4]``.
            enc_cls_scores, enc_bbox_preds (Tensor): ``[B, Q, C]``,
                ``[B, Q, 4]``.
            batch_gt_instances (list[:obj:`InstanceData`]): ``bboxes`` (xyxy
                pixels of the input tensor) and ``labels``.
            batch_img_metas (list[dict]): Meta info of each image.
            dn_meta (dict, optional): Denoising meta.

        Returns:
            dict[str, Tensor]
        """
        split = self.split_outputs
        dn_logits, logits = split(all_layers_cls_scores, dn_meta, 2)
        dn_boxes, boxes = split(all_layers_bbox_preds, dn_meta, 2)
        dn_corners, corners = split(all_layers_corners, dn_meta, 2)
        dn_refs, refs = split(ref_points, dn_meta, 1)
        dn_pre_logits, pre_logits = split(pre_cls_scores, dn_meta, 1)
        dn_pre_boxes, pre_boxes = split(pre_bbox_preds, dn_meta, 1)
        dn_layers = dn_pre = None
        if dn_meta is not None:
            dn_layers = FDRPredictions(dn_logits, dn_boxes, dn_corners,
                                       dn_refs)
            dn_pre = BoxPredictions(dn_pre_logits, dn_pre_boxes)
        return self.go_lsd_loss(
            FDRPredictions(logits, boxes, corners, refs),
            self.get_targets(batch_gt_instances, batch_img_metas),
            pre=BoxPredictions(pre_logits, pre_boxes),
            enc=[BoxPredictions(enc_cls_scores, enc_bbox_preds)],
            dn_layers=dn_layers,
            dn_pre=dn_pre,
            dn_meta=dn_meta)

    @staticmethod
    def split_outputs(tensor: Tensor, dn_meta: Optional[dict],
                      dim: int) -> Tuple[Optional[Tensor], Tensor]:
        """``(denoising part, matching part)`` of ``tensor`` along the query
        axis ``dim`` (``None`` denoising part without ``dn_meta``)."""
        if dn_meta is None:
            return None, tensor
        dn_part, match_part = torch.split(
            tensor, list(dn_meta['dn_num_split']), dim=dim)
        return dn_part, match_part
