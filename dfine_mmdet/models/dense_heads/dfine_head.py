"""D-FINE detection head: per-layer classification / FDR branches, the
official post-processing, and the loss entry point.

Branches (all hold official weights; see the key table in
:mod:`dfine_mmdet.models.detectors.official_checkpoint`):

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

Box formats: the decoder predicts normalised ``(cx, cy, w, h)`` relative to
the network input tensor; :meth:`DFINEHead.predict_by_feat` returns
``(x1, y1, x2, y2)`` pixels of the original image.
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.layers.transformer import MLP
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh,
                                   get_box_tensor)
from mmdet.utils import ConfigType, InstanceList, OptConfigType
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..layers.lqe import LQE


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


@MODELS.register_module()
class DFINEHead(BaseModule):
    """Head of D-FINE (mmdet 3.x ``DINOHead`` counterpart).

    Args:
        num_classes (int): Number of classes ``C`` (80 COCO, 366 for the
            official Objects365 checkpoints).
        embed_dims (int): Decoder width ``D``. Default 256.
        num_pred_layer (int): Number of decoder layers ``L``. Default 6.
        reg_max (int): FDR bin intervals (33 bins per edge). Default 32.
        lqe_cfg (dict): ``k``, ``hidden_dim``, ``num_layers`` of the LQE.
        criterion (dict): Config of the loss module (``DFINECriterion``);
            only needed for training.
        train_cfg (dict, optional): Unused (mmdet interface).
        test_cfg (dict, optional): ``max_per_img`` (default 300) detections
            per image after the top-k over ``Q x C`` scores.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int = 256,
                 num_pred_layer: int = 6,
                 reg_max: int = 32,
                 lqe_cfg: ConfigType = dict(
                     k=4, hidden_dim=64, num_layers=2),
                 criterion: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = dict(max_per_img=300),
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_pred_layer = num_pred_layer
        self.reg_max = reg_max
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg if test_cfg is not None else dict(
            max_per_img=300)
        num_corners = 4 * (reg_max + 1)
        self.cls_branches = nn.ModuleList([
            nn.Linear(embed_dims, num_classes) for _ in range(num_pred_layer)
        ])
        self.reg_branches = nn.ModuleList([
            MLP(embed_dims, embed_dims, num_corners, 3)
            for _ in range(num_pred_layer)
        ])
        self.lqe_layers = nn.ModuleList([
            LQE(reg_max=reg_max, **lqe_cfg) for _ in range(num_pred_layer)
        ])
        self.pre_reg_branch = MLP(embed_dims, embed_dims, 4, 3)
        self.enc_cls_branch = nn.Linear(embed_dims, num_classes)
        self.enc_reg_branch = MLP(embed_dims, embed_dims, 4, 3)
        self.criterion = MODELS.build(criterion) if criterion else None
        self._init_branches()

    def _init_branches(self) -> None:
        """Official init: class biases at prior 0.01, last layer of every box
        / corner branch zero (start at the reference box)."""
        bias = _prior_bias(0.01)
        for cls_branch in list(self.cls_branches) + [self.enc_cls_branch]:
            nn.init.constant_(cls_branch.bias, bias)
        for reg in list(self.reg_branches) + [self.pre_reg_branch,
                                              self.enc_reg_branch]:
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
        return self.lqe_layers[layer_id](self.cls_branches[layer_id](
            hidden_state), pred_corners)

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

        ``scores = sigmoid(logits)`` flattened over ``Q x C``, top-k (k =
        ``max_per_img``, sorted descending), ``label = index % C``, ``query =
        index // C``; no threshold, no NMS, no clamping (as the official
        ``DFINEPostProcessor``).  Boxes are scaled from normalised cxcywh to
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
        cls_scores = all_layers_cls_scores[-1]
        bbox_preds = all_layers_bbox_preds[-1]
        return [
            self._predict_by_feat_single(cls_scores[i], bbox_preds[i],
                                         batch_img_metas[i], rescale)
            for i in range(len(batch_img_metas))
        ]

    def _predict_by_feat_single(self, cls_score: Tensor, bbox_pred: Tensor,
                                img_meta: dict,
                                rescale: bool) -> InstanceData:
        """``cls_score`` [Q, C] logits, ``bbox_pred`` [Q, 4] cxcywh."""
        max_per_img = min(
            self.test_cfg.get('max_per_img', 300), cls_score.numel())
        num_classes = cls_score.shape[-1]
        scores, index = cls_score.sigmoid().flatten().topk(max_per_img)
        labels = index % num_classes
        query_index = index // num_classes
        w, h = input_size_wh(img_meta)
        bboxes = bbox_cxcywh_to_xyxy(bbox_pred[query_index])
        bboxes = bboxes * bboxes.new_tensor([w, h, w, h])
        if rescale and 'scale_factor' in img_meta:
            bboxes = bboxes / bboxes.new_tensor(
                img_meta['scale_factor']).repeat((1, 2))
        results = InstanceData()
        results.bboxes = bboxes
        results.scores = scores
        results.labels = labels
        results.query_index = query_index
        return results

    # ------------------------------------------------------------------ #
    # training
    # ------------------------------------------------------------------ #
    @staticmethod
    def get_targets(batch_data_samples: SampleList) -> List[Dict[str, Tensor]]:
        """Official-format targets: per image ``labels`` int64 [n] and
        ``boxes`` [n, 4] normalised cxcywh (by the network input size)."""
        targets = []
        for sample in batch_data_samples:
            gt = sample.gt_instances
            w, h = input_size_wh(sample.metainfo)
            boxes = get_box_tensor(gt.bboxes).float()
            boxes = bbox_xyxy_to_cxcywh(boxes) / boxes.new_tensor(
                [w, h, w, h])
            targets.append(dict(labels=gt.labels.long(), boxes=boxes))
        return targets

    def build_outputs(self,
                      hidden_states: Tensor,
                      pred_boxes: Tensor,
                      pred_corners: Tensor,
                      ref_points: Tensor,
                      pre_boxes: Tensor,
                      up: Tensor,
                      reg_scale: Tensor,
                      enc_topk_logits: Tensor,
                      enc_topk_bboxes: Tensor,
                      dn_meta: Optional[dict] = None,
                      **kwargs) -> dict:
        """The criterion input, in the exact structure of the official
        training-mode decoder output.

        Denoising queries (first ``dn_num_split[0]`` of the ``Q'`` queries)
        are split off into ``dn_outputs`` / ``dn_pre_outputs``.  Teacher
        entries (for DDF) are the last layer's corners / logits.
        """
        logits, boxes, corners = self(hidden_states, pred_boxes, pred_corners)
        pre_logits = self.cls_branches[0](hidden_states[0])
        num_layers = logits.shape[0]
        refs = ref_points[None].expand(num_layers, -1, -1, -1)

        if dn_meta is not None:
            split = list(dn_meta['dn_num_split'])

            def _split(t: Tensor, dim: int) -> Tuple[Tensor, Tensor]:
                dn_part, match_part = torch.split(t, split, dim=dim)
                return dn_part, match_part

            dn_pre_logits, pre_logits = _split(pre_logits, 1)
            dn_pre_boxes, pre_boxes = _split(pre_boxes, 1)
            dn_logits, logits = _split(logits, 2)
            dn_boxes, boxes = _split(boxes, 2)
            dn_corners, corners = _split(corners, 2)
            dn_refs, refs = _split(refs, 2)

        def _layers(lg, bx, cn, rf):
            """Per-layer dicts; one tensor object per layer output, the
            teacher (last layer) shared by all."""
            lg, bx, cn, rf = lg.unbind(0), bx.unbind(0), cn.unbind(0), \
                rf.unbind(0)
            return [
                dict(
                    pred_logits=lg[i],
                    pred_boxes=bx[i],
                    pred_corners=cn[i],
                    ref_points=rf[i],
                    teacher_corners=cn[-1],
                    teacher_logits=lg[-1]) for i in range(len(lg))
            ]

        layers = _layers(logits, boxes, corners, refs)
        last = layers[-1]
        outputs = dict(
            pred_logits=last['pred_logits'],
            pred_boxes=last['pred_boxes'],
            pred_corners=last['pred_corners'],
            ref_points=last['ref_points'],
            up=up,
            reg_scale=reg_scale,
            aux_outputs=layers[:-1],
            enc_aux_outputs=[
                dict(pred_logits=enc_topk_logits, pred_boxes=enc_topk_bboxes)
            ],
            pre_outputs=dict(pred_logits=pre_logits, pred_boxes=pre_boxes),
            enc_meta=dict(class_agnostic=False))
        if dn_meta is not None:
            outputs['dn_outputs'] = _layers(dn_logits, dn_boxes, dn_corners,
                                            dn_refs)
            outputs['dn_pre_outputs'] = dict(
                pred_logits=dn_pre_logits, pred_boxes=dn_pre_boxes)
            outputs['dn_meta'] = dn_meta
        return outputs

    def loss(self, batch_data_samples: SampleList,
             **head_inputs) -> Dict[str, Tensor]:
        """Build the official ``outputs`` dict and targets, run the
        criterion.

        Returns:
            dict[str, Tensor]: Weighted losses keyed by the official term
            names (``loss_vfl``, ``loss_bbox_aux_0``, ``loss_fgl_dn_2``, ...).
        """
        if self.criterion is None:
            raise RuntimeError(
                'DFINEHead.loss() needs a criterion: set bbox_head.criterion='
                "dict(type='DFINECriterion', ...) in the config")
        outputs = self.build_outputs(**head_inputs)
        targets = self.get_targets(batch_data_samples)
        return self.criterion(outputs, targets)
