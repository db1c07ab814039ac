"""DINO head with FDR box branches, trained with FGL + DDF over the GO-LSD
union of matches (D-FINE's recipe applied to mmdet's DINO).

D-FINE (arXiv 2410.13842, Table 3/§4.3) reports that Fine-grained
Distribution Refinement (FDR) and Global Optimal Localization
Self-Distillation (GO-LSD) also lift other DETRs.  This head makes that a
config change for mmdet's ``DINO``:

* ``reg_branches[i]`` (``i < num_layers``, the decoder's) keep DINO's MLP
  (``num_reg_fcs`` Linear+ReLU, then Linear) but end in ``4 (reg_max + 1)``
  corner logits; the decoder (:class:`FDRDinoTransformerDecoder`) refines
  them layer by layer and decodes them with this head's ``bbox_coder``
  (:class:`FDRBBoxCoder`).  ``reg_branches[num_layers]`` (two-stage encoder
  proposals) stays DINO's ``D -> 4`` delta branch.
* ``cls_branches`` are DINO's.
* ``pre_refine=True`` adds ``pre_reg_branch`` (D-FINE's ``pre_bbox_head``):
  a ``D -> 4`` delta MLP with the layout of DINO's reg branches, applied to
  layer 0's normed output; its box ``sigmoid(delta + logit(proposal))``
  (detached) is the fixed FDR reference of every layer, and it is
  supervised like D-FINE's ``pre`` output (layer-0 class logits with the pre
  boxes: own Hungarian match, member of the GO-LSD union, terms ``_pre`` /
  ``_dn_pre``, no corners).  It is DINO's layer-0 box exactly (DINO: box_0 =
  ``sigmoid(reg_branches[0](h_0) + logit(proposal))``), so loading a plain
  DINO checkpoint (no ``pre_reg_branch`` keys, a 4-output
  ``reg_branches.0``) initialises it from that checkpoint's
  ``bbox_head.reg_branches.0`` (:meth:`DINOFDRHead._load_from_state_dict`).
* Losses: the matching / GO-LSD union / denoising computation of
  :class:`~dfine_mmdet.models.dense_heads.go_lsd_loss.GOLSDLossMixin`
  (Hungarian matching per output, union over layers and encoder, L1 + GIoU
  on the union, FGL on every layer, DDF from the last layer to the others,
  denoising terms ``_dn_i``); classification ``loss_cls`` (mmdet's
  ``FocalLoss``, DINO's) or ``loss_vfl`` (``DFINEVarifocalLoss``).
* The assigner is ``train_cfg.assigner`` (mmdet convention, built by
  ``DETRHead.__init__`` like ``loss_cls`` / ``loss_bbox`` / ``loss_iou``); it
  must be a batched ``match`` assigner such as ``DFINEHungarianAssigner`` (its
  focal / L1 / GIoU costs 2 / 5 / 2 are DINO's ``HungarianAssigner`` costs;
  the default when ``train_cfg`` has none).
* Inference is DINOHead's path: ``predict`` -> ``forward`` (class logits of
  every layer, the decoder's FDR boxes) -> ``predict_by_feat`` (top-k over
  ``Q x C`` sigmoid scores, boxes clamped to the image, rescaled).

Boxes are normalised ``(cx, cy, w, h)`` by each image's ``img_shape`` (as in
``DINOHead``; the decoder's ``valid_ratios`` map them onto the padded
batch).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads import DINOHead
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh, get_box_tensor
from mmdet.utils import ConfigType, InstanceList, OptConfigType
from mmengine.model import BaseModule, bias_init_with_prob
from torch import Tensor, nn

from ..utils import MatchIndices
from .go_lsd_loss import GOLSDLossMixin
from .supervision_plan import BoxPredictions, FDRPredictions


def _reg_branch(embed_dims: int, num_reg_fcs: int,
                out_dims: int) -> nn.Sequential:
    """DINO's regression MLP (``DeformableDETRHead._init_layers``) with
    ``out_dims`` outputs; same module layout, so the hidden Linear layers of a
    plain DINO checkpoint load into it."""
    layers: List[nn.Module] = []
    for _ in range(num_reg_fcs):
        layers += [nn.Linear(embed_dims, embed_dims), nn.ReLU()]
    layers.append(nn.Linear(embed_dims, out_dims))
    return nn.Sequential(*layers)


@MODELS.register_module()
class DINOFDRHead(GOLSDLossMixin, DINOHead):
    """``DINOHead`` with FDR corner branches and GO-LSD losses.

    Args:
        num_classes (int): Number of classes ``C``.
        embed_dims (int): Decoder width ``D`` (filled in from the decoder by
            :class:`DINOFDR`). Default 256.
        num_reg_fcs (int): Hidden Linear+ReLU layers of every reg branch.
            Default 2 (DINO's).
        num_pred_layer (int): ``num_layers + 1`` (two-stage); set by the
            detector, as for ``DINOHead``.
        as_two_stage (bool): Set by the detector (DINO: True).
        share_pred_layer (bool): Must be False (each layer refines its own
            residual).
        pre_refine (bool): Add the layer-0 pre head whose box is the fixed
            FDR reference (D-FINE's decoder; see the module docstring).
            Default False (reference = the decoder input reference).
        bbox_coder (dict): ``FDRBBoxCoder`` (``reg_max``, ``reg_scale``,
            ``up``); the one place these are set.
        go_lsd_assigner (dict): ``GOLSDAssigner``.
        loss_cls (dict): ``FocalLoss`` (term ``loss_cls``) or
            ``DFINEVarifocalLoss`` (term ``loss_vfl``); sigmoid-based.
        loss_bbox, loss_iou (dict): L1 / GIoU (terms ``loss_bbox`` /
            ``loss_giou``).
        loss_fgl, loss_ddf (dict): FGL / DDF (``dict()`` disables a term).
        ddf_ref_batch_size (int): DDF balance constant. Default 8.
        union_box_losses (bool): Box terms (L1, GIoU, FGL) of every output
            on the GO-LSD union (True, D-FINE) or on the output's own match
            (False; an ablation of issue 17, docs/fdr_in_detrs.md).
        sync_cls_avg_factor (bool): Accepted for config compatibility with
            ``DINOHead``; the mixin always averages its normalisers over
            GPUs.
        train_cfg (dict): ``assigner`` (a ``DFINEHungarianAssigner``).
        test_cfg (dict): ``max_per_img``.
        init_cfg (dict, optional): mmengine init config.

    The coder, GO-LSD and FDR loss defaults are D-FINE's.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int = 256,
                 num_reg_fcs: int = 2,
                 num_pred_layer: int = 7,
                 as_two_stage: bool = True,
                 share_pred_layer: bool = False,
                 pre_refine: bool = False,
                 bbox_coder: ConfigType = dict(type='FDRBBoxCoder'),
                 go_lsd_assigner: ConfigType = dict(type='GOLSDAssigner'),
                 loss_cls: ConfigType = dict(
                     type='FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.25,
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
                 union_box_losses: bool = True,
                 sync_cls_avg_factor: bool = True,
                 train_cfg: OptConfigType = None,
                 test_cfg: ConfigType = dict(max_per_img=300),
                 init_cfg: OptConfigType = None) -> None:
        if share_pred_layer:
            raise ValueError(f'{type(self).__name__}: share_pred_layer=True '
                             'is not supported (every layer predicts its '
                             'own FDR residual)')
        # read by _init_layers (called by DETRHead.__init__); plain
        # attributes, as DeformableDETRHead sets its own before __init__
        self.pre_refine = pre_refine
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        train_cfg = dict(train_cfg or {})
        train_cfg.setdefault('assigner', dict(type='DFINEHungarianAssigner'))
        super().__init__(
            num_classes=num_classes,
            embed_dims=embed_dims,
            num_reg_fcs=num_reg_fcs,
            num_pred_layer=num_pred_layer,
            as_two_stage=as_two_stage,
            share_pred_layer=share_pred_layer,
            sync_cls_avg_factor=sync_cls_avg_factor,
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            loss_iou=loss_iou,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg)
        if not callable(getattr(self.assigner, 'match', None)):
            raise TypeError(
                f'{type(self).__name__}: train_cfg.assigner must be a batched '
                'matcher with match(logits, boxes, targets), e.g. '
                "dict(type='DFINEHungarianAssigner'); got "
                f'{type(self.assigner).__name__} (mmdet\'s HungarianAssigner '
                'of the plain DINO config must be replaced)')
        if not getattr(self.loss_cls, 'use_sigmoid', False):
            raise ValueError(
                f'{type(self).__name__}: loss_cls must be sigmoid-based '
                '(FocalLoss with use_sigmoid=True or DFINEVarifocalLoss), got '
                f'{type(self.loss_cls).__name__}')
        self._init_go_lsd_losses(go_lsd_assigner, loss_fgl, loss_ddf,
                                 ddf_ref_batch_size, union_box_losses)

    @property
    def num_fdr_layers(self) -> int:
        """Decoder layers (branches with corner outputs)."""
        return self.num_pred_layer - 1 if self.as_two_stage \
            else self.num_pred_layer

    def _init_layers(self) -> None:
        """``cls_branches`` as DINO; ``reg_branches[:num_fdr_layers]`` end in
        ``4 (reg_max + 1)`` corner logits, the encoder's (two-stage) in 4."""
        num_corners = 4 * (self.reg_max + 1)
        self.cls_branches = nn.ModuleList([
            nn.Linear(self.embed_dims, self.cls_out_channels)
            for _ in range(self.num_pred_layer)
        ])
        self.reg_branches = nn.ModuleList([
            _reg_branch(self.embed_dims, self.num_reg_fcs,
                        num_corners if i < self.num_fdr_layers else 4)
            for i in range(self.num_pred_layer)
        ])
        self.pre_reg_branch = None
        if self.pre_refine:
            # forked (CPU) RNG, where modules are built: adding the pre head
            # leaves the initialisation of every other parameter (built
            # after the head) unchanged, so the variants with and without it
            # start from the same weights
            with torch.random.fork_rng(devices=[]):
                self.pre_reg_branch = _reg_branch(self.embed_dims,
                                                  self.num_reg_fcs, 4)

    def init_weights(self) -> None:
        """Class biases at prior 0.01, last Linear of every reg branch and of
        the pre head zero (uniform edge distributions = the reference box,
        pre box = the proposal; DINO's two-stage init)."""
        BaseModule.init_weights(self)
        bias = bias_init_with_prob(0.01)
        for m in self.cls_branches:
            nn.init.constant_(m.bias, bias)
        pre = [self.pre_reg_branch] if self.pre_reg_branch is not None \
            else []
        for m in list(self.reg_branches) + pre:
            nn.init.constant_(m[-1].weight, 0.)
            nn.init.constant_(m[-1].bias, 0.)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """With ``pre_refine``, a state dict without ``pre_reg_branch.*`` but
        with a plain DINO layer-0 delta branch (``reg_branches.0`` ending in
        4 outputs) initialises the pre head from that branch (same layout,
        same function: DINO's layer-0 box); the copies are added to
        ``state_dict`` before the children load, so nothing is reported
        missing.  Any other state dict loads unchanged."""
        if self.pre_reg_branch is not None:
            pre, src = prefix + 'pre_reg_branch.', prefix + 'reg_branches.0.'
            last = f'{src}{len(self.pre_reg_branch) - 1}.weight'
            if not any(k.startswith(pre) for k in state_dict) and \
                    last in state_dict and state_dict[last].shape[0] == 4:
                for k in list(state_dict):
                    if k.startswith(src):
                        state_dict[pre + k[len(src):]] = state_dict[k]
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # ------------------------------------------------------------------ #
    # forward / inference (DINOHead's path)
    # ------------------------------------------------------------------ #
    def forward(self,
                hidden_states: Tensor,
                references: Sequence[Tensor],
                pred_corners: Optional[Tensor] = None,
                pre_boxes: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Per-layer class logits and the decoder's FDR boxes.

        Args:
            hidden_states (Tensor): ``[L, B, Q, D]``.
            references (Tensor | list[Tensor]): ``L + 1`` entries ``[B, Q,
                4]``: initial reference, then each layer's FDR box (cxcywh).
            pred_corners (Tensor, optional): ``[L, B, Q, 4 (reg_max + 1)]``
                corner logits (the boxes above are already decoded from
                them; accepted because ``DINO._forward``, i.e.
                ``mode='tensor'``, passes every decoder output).
            pre_boxes (Tensor, optional): ``[B, Q, 4]`` pre-refined boxes
                (``pre_refine=True``); not part of the tensor output.

        Returns:
            tuple[Tensor]: ``[L, B, Q, C]`` logits, ``[L, B, Q, 4]`` boxes.
        """
        num_layers = hidden_states.shape[0]
        if len(references) != num_layers + 1:
            raise ValueError(f'{len(references)} references for '
                             f'{num_layers} decoder layers (expected the '
                             'initial one plus one per layer)')
        logits = torch.stack([
            self.cls_branches[i](hidden_states[i]) for i in range(num_layers)
        ])
        boxes = torch.stack([references[i + 1] for i in range(num_layers)])
        return logits, boxes

    def predict(self,
                hidden_states: Tensor,
                references: Sequence[Tensor],
                batch_data_samples: SampleList,
                rescale: bool = True,
                pred_corners: Optional[Tensor] = None,
                pre_boxes: Optional[Tensor] = None) -> InstanceList:
        """``DINOHead.predict`` (``pred_corners`` and ``pre_boxes`` are
        accepted and unused: the boxes are already decoded)."""
        return super().predict(hidden_states, references, batch_data_samples,
                               rescale)

    # ------------------------------------------------------------------ #
    # training
    # ------------------------------------------------------------------ #
    def loss(self,
             hidden_states: Tensor,
             references: Sequence[Tensor],
             pred_corners: Tensor,
             enc_outputs_class: Tensor,
             enc_outputs_coord: Tensor,
             batch_data_samples: SampleList,
             dn_meta: Optional[Dict[str, int]],
             pre_boxes: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """``DINOHead.loss`` with the corner logits.

        Args:
            hidden_states (Tensor): ``[L, B, T+Q, D]``.
            references (Tensor | list[Tensor]): ``L + 1`` x ``[B, T+Q, 4]``.
            pred_corners (Tensor): ``[L, B, T+Q, 4 (reg_max + 1)]``.
            enc_outputs_class (Tensor): ``[B, Q, C]`` encoder top-k logits.
            enc_outputs_coord (Tensor): ``[B, Q, 4]`` their boxes.
            batch_data_samples (list[DetDataSample]): With ``gt_instances``.
            dn_meta (dict | None): ``num_denoising_queries``,
                ``num_denoising_groups`` (mmdet's ``CdnQueryGenerator``).
            pre_boxes (Tensor, optional): ``[B, T+Q, 4]`` pre-head boxes
                (``pre_refine``).

        Returns:
            dict[str, Tensor]: Weighted loss terms (``loss_cls``,
            ``loss_bbox``, ``loss_giou``, ``loss_fgl``, ``*_aux_i`` (+
            ``loss_ddf``), ``*_pre`` and ``*_dn_pre`` with pre boxes,
            ``*_enc_0``, ``*_dn_i``).
        """
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        logits, boxes = self(hidden_states, references)
        return self.loss_by_feat(logits, boxes, pred_corners, references[0],
                                 enc_outputs_class, enc_outputs_coord,
                                 batch_gt_instances, batch_img_metas, dn_meta,
                                 pre_boxes)

    def loss_by_feat(
            self,
            all_layers_cls_scores: Tensor,
            all_layers_bbox_preds: Tensor,
            all_layers_corners: Tensor,
            init_references: Tensor,
            enc_cls_scores: Optional[Tensor],
            enc_bbox_preds: Optional[Tensor],
            batch_gt_instances: InstanceList,
            batch_img_metas: List[dict],
            dn_meta: Optional[Dict[str, int]] = None,
            pre_bbox_preds: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Split off the denoising queries and compute the losses with
        :meth:`GOLSDLossMixin.go_lsd_loss`.

        Args:
            all_layers_cls_scores (Tensor): ``[L, B, T+Q, C]``.
            all_layers_bbox_preds (Tensor): ``[L, B, T+Q, 4]`` cxcywh.
            all_layers_corners (Tensor): ``[L, B, T+Q, 4 (reg_max + 1)]``.
            init_references (Tensor): ``[B, T+Q, 4]`` the fixed FDR
                references (FGL targets are encoded relative to them).
            enc_cls_scores, enc_bbox_preds (Tensor | None): ``[B, Q, C]``,
                ``[B, Q, 4]``.
            batch_gt_instances (list[InstanceData]): ``bboxes`` xyxy pixels,
                ``labels``.
            batch_img_metas (list[dict]): With ``img_shape``.
            dn_meta (dict | None): Denoising layout.
            pre_bbox_preds (Tensor, optional): ``[B, T+Q, 4]`` pre-head
                boxes; supervised with layer 0's class logits as D-FINE's
                ``pre`` output (terms ``_pre`` / ``_dn_pre``).

        Returns:
            dict[str, Tensor]
        """
        num_dn = 0 if dn_meta is None else dn_meta['num_denoising_queries']

        def split(t: Optional[Tensor], dim: int) -> Tuple[Tensor, Tensor]:
            if t is None:
                return None, None
            return t.narrow(dim, 0, num_dn), t.narrow(dim, num_dn,
                                                      t.shape[dim] - num_dn)

        dn_logits, logits = split(all_layers_cls_scores, 2)
        dn_boxes, boxes = split(all_layers_bbox_preds, 2)
        dn_corners, corners = split(all_layers_corners, 2)
        dn_refs, refs = split(init_references, 1)
        dn_pre_boxes, pre_boxes = split(pre_bbox_preds, 1)
        pre = dn_pre = dn_layers = None
        if pre_bbox_preds is not None:
            pre = BoxPredictions(logits[0], pre_boxes)
            dn_pre = BoxPredictions(dn_logits[0], dn_pre_boxes)
        enc = [] if enc_cls_scores is None else [
            BoxPredictions(enc_cls_scores, enc_bbox_preds)
        ]
        if num_dn > 0:
            dn_layers = FDRPredictions(dn_logits, dn_boxes, dn_corners,
                                       dn_refs)
        return self.go_lsd_loss(
            FDRPredictions(logits, boxes, corners, refs),
            self.get_targets(batch_gt_instances, batch_img_metas),
            pre=pre,
            enc=enc,
            dn_layers=dn_layers,
            dn_pre=dn_pre if num_dn > 0 else None,
            dn_meta=dn_meta)

    @staticmethod
    def get_targets(batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict]) -> List[Dict[str, Tensor]]:
        """Per image ``labels`` int64 [n] and ``boxes`` [n, 4] cxcywh
        normalised by ``img_shape`` (as ``DINOHead``)."""
        if len(batch_gt_instances) != len(batch_img_metas):
            raise ValueError(f'{len(batch_gt_instances)} gt_instances for '
                             f'{len(batch_img_metas)} images')
        targets = []
        for gt, img_meta in zip(batch_gt_instances, batch_img_metas):
            img_h, img_w = img_meta['img_shape'][:2]
            boxes = get_box_tensor(gt.bboxes).float()
            boxes = bbox_xyxy_to_cxcywh(
                boxes / boxes.new_tensor([img_w, img_h, img_w, img_h]))
            targets.append(dict(labels=gt.labels.long(), boxes=boxes))
        return targets

    def dn_matches(self, dn_meta: Dict, targets: Sequence[Dict[str, Tensor]],
                   device: torch.device) -> Tuple[List[MatchIndices], int]:
        """Denoising matches of mmdet's ``CdnQueryGenerator`` layout (as
        ``DINOHead._get_dn_targets_single``): ``G`` groups of ``2 m``
        queries (``m`` positives, then ``m`` negatives); positive ``j`` of
        group ``g`` is query ``g * 2m + j`` and reconstructs GT ``j``."""
        num_groups = int(dn_meta['num_denoising_groups'])
        num_queries = int(dn_meta['num_denoising_queries'])
        if num_groups < 1 or num_queries % num_groups:
            raise ValueError(f'dn_meta: {num_queries} denoising queries do '
                             f'not split into {num_groups} groups')
        per_group = num_queries // num_groups
        indices = []
        for t in targets:
            num_gt = len(t['labels'])
            if 2 * num_gt > per_group:
                raise ValueError(
                    f'dn_meta: {per_group} queries per denoising group '
                    f'cannot hold {num_gt} positives and negatives')
            gt_idx = torch.arange(num_gt, dtype=torch.int64, device=device)
            group_start = torch.arange(
                num_groups, dtype=torch.int64, device=device) * per_group
            query_idx = (group_start[:, None] + gt_idx[None]).flatten()
            indices.append((query_idx, gt_idx.repeat(num_groups)))
        return indices, num_groups
