"""D-FINE detector (arXiv 2410.13842) on mmdet's ``DetectionTransformer``.

Data flow (``DetectionTransformer.forward_transformer``)::

    extract_feat    backbone (HGNetV2) -> neck (HybridEncoder: AIFI + CCFF)
    pre_transformer decoder input projection, flatten levels -> memory
                    [B, N, D], spatial shapes [(H_l, W_l)]
    forward_encoder identity (D-FINE's transformer encoder, AIFI, is part of
                    the neck)
    pre_decoder     two-stage query selection: mask invalid anchors, LayerNorm
                    (Linear(memory)), encoder class / box heads, top-k (300)
                    tokens -> content queries and reference boxes; in training
                    prepend the contrastive denoising queries
    forward_decoder FDR decoder loop (``DFINETransformerDecoder``)

``DFINEHead`` turns the decoder output into per-layer logits (``cls + LQE``),
the official post-processing and the loss.

Anchors are generated for the **actual** feature shapes (cached per shape),
so any input size, including rectangular ones, works.  The ``anchors`` /
``valid_mask`` buffers of an official checkpoint (made for
``eval_spatial_size``, 640x640) are kept and used at inference whenever the
feature shapes equal the ones they were made for, which makes a converted
checkpoint reproduce the official outputs exactly.

The mapping from official state-dict keys to this model is in
:mod:`dfine_mmdet.checkpoint.official`.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors.base_detr import DetectionTransformer
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList
from mmdet.utils import OptConfigType
from torch import Tensor, nn

from ...checkpoint.guard import install_checkpoint_guard
from ..layers.contrastive_denoising import DFINEContrastiveDenoising
from ..layers.fdr_decoder import DFINETransformerDecoder
from ..utils import SpatialShapes


def generate_anchors(spatial_shapes: Sequence[Tuple[int, int]],
                     grid_size: float = 0.05,
                     eps: float = 0.01,
                     dtype: torch.dtype = torch.float32,
                     device='cpu') -> Tuple[Tensor, Tensor]:
    """Query-selection anchors of every memory token (official recipe).

    Level ``l`` with ``(H, W)``: centres ``((x + 0.5) / W, (y + 0.5) / H)``
    (row-major), size ``grid_size * 2^l``.  Anchors are returned in logit
    space; tokens whose anchor has a coordinate outside ``(eps, 1 - eps)`` are
    invalid (``valid_mask`` False, anchor ``+inf``).

    Returns:
        tuple[Tensor]: ``anchors`` ``[1, N, 4]`` (logit cxcywh) and
        ``valid_mask`` ``[1, N, 1]`` bool.
    """
    anchors = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        grid_y, grid_x = torch.meshgrid(
            torch.arange(h), torch.arange(w), indexing='ij')
        grid_xy = torch.stack([grid_x, grid_y], dim=-1)
        grid_xy = (grid_xy.unsqueeze(0) + 0.5) / torch.tensor([w, h],
                                                              dtype=dtype)
        wh = torch.ones_like(grid_xy) * grid_size * (2.0**lvl)
        anchors.append(torch.cat([grid_xy, wh], dim=-1).reshape(-1, h * w, 4))
    anchors = torch.cat(anchors, dim=1).to(device)
    valid_mask = ((anchors > eps) * (anchors < 1 - eps)).all(-1, keepdim=True)
    anchors = torch.log(anchors / (1 - anchors))
    anchors = torch.where(valid_mask, anchors, torch.inf)
    return anchors, valid_mask


def assert_fill(fills: Sequence[tuple]) -> None:
    """Assert-and-fill (mmdet's ``DeformableDETR`` / ``DINO`` way), in place:
    each ``(cfg, field, value, source)`` sets ``cfg[key] = value`` (``key``
    = last part of ``field``); a config that states another value raises a
    ``ValueError`` naming both fields (an equal value is accepted)."""
    for cfg, field, value, source in fills:
        key = field.rsplit('.', 1)[-1]
        old = cfg.get(key, value)
        if (list(old) if isinstance(old, (list, tuple)) else old) != value:
            raise ValueError(
                f'inconsistent config: {field}={old!r} but {source}={value!r}'
                f'; set it only in {source} (it is filled in from there)')
        cfg[key] = value


def fill_shared_settings(neck: Optional[dict], decoder: Optional[dict],
                         bbox_head: Optional[dict], dn_cfg: Optional[dict],
                         feat_strides: Sequence[int]) -> None:
    """Fill the settings several D-FINE parts share from their one source
    (in place, :func:`assert_fill`; see :class:`DFINE`)."""
    if decoder is None or bbox_head is None:
        return
    for key in ('reg_max', 'reg_scale', 'up'):  # the head's coder's
        if key in decoder:
            raise ValueError(f'model.decoder.{key} is not a decoder field: '
                             f'set model.bbox_head.bbox_coder.{key}')
    layer_cfg = decoder.setdefault('layer_cfg', {})
    embed_dims = layer_cfg.get('embed_dims', 256)
    fills = [(bbox_head, 'model.bbox_head.embed_dims', embed_dims,
              'model.decoder.layer_cfg.embed_dims'),
             (bbox_head, 'model.bbox_head.num_pred_layer',
              decoder['num_layers'], 'model.decoder.num_layers'),
             (bbox_head, 'model.bbox_head.activation',
              decoder.get('activation', 'relu'), 'model.decoder.activation'),
             (bbox_head, 'model.bbox_head.mlp_act',
              decoder.get('mlp_act', 'relu'), 'model.decoder.mlp_act'),
             (layer_cfg, 'model.decoder.layer_cfg.num_levels',
              len(feat_strides), 'len(model.feat_strides)')]
    if dn_cfg is not None:
        dn_cfg.pop('type', None)
        fills += [(dn_cfg, 'model.dn_cfg.num_classes',
                   bbox_head['num_classes'], 'model.bbox_head.num_classes'),
                  (dn_cfg, 'model.dn_cfg.embed_dims', embed_dims,
                   'model.decoder.layer_cfg.embed_dims')]
    if neck is not None and ('feat_strides' in neck
                             or neck.get('type') == 'HybridEncoder'):
        fills.append((neck, 'model.neck.feat_strides', list(feat_strides),
                      'model.feat_strides'))
    assert_fill(fills)


def fill_in_channels(in_channels: Optional[Sequence[int]],
                     neck: Optional[nn.Module]) -> List[int]:
    """The decoder input channels: the built neck's ``out_channels``
    (assert-and-fill against a stated ``model.in_channels``); a neck without
    ``out_channels`` needs ``model.in_channels`` stated."""
    neck_channels = getattr(neck, 'out_channels', None)
    if neck_channels is not None:
        cfg = {} if in_channels is None else dict(in_channels=in_channels)
        assert_fill([(cfg, 'model.in_channels', list(neck_channels),
                      'model.neck.out_channels')])
        in_channels = cfg['in_channels']
    if in_channels is None:
        raise ValueError('model.in_channels is needed: the neck has no '
                         'out_channels to derive it from')
    return list(in_channels)


@MODELS.register_module()
class DFINE(DetectionTransformer):
    """D-FINE: DETR with Fine-grained Distribution Refinement and GO-LSD.

    Args:
        backbone (dict): e.g. ``HGNetV2``.
        neck (dict): ``HybridEncoder`` (its outputs are the decoder levels).
        decoder (dict): Arguments of :class:`DFINETransformerDecoder`
            (``num_layers``, ``layer_cfg``, ``eval_idx``, ``activation``,
            ``mlp_act``; the coder is the head's).
        bbox_head (dict): ``DFINEHead``.
        in_channels (Sequence[int], optional): Channels of the neck outputs
            (default: the neck's ``out_channels``). Levels whose width
            differs from the decoder width get a 1x1 conv + BN projection
            (D-FINE-X: 384 -> 256), others an identity.
        num_queries (int): Number of selected queries. Default 300.
        eval_spatial_size (tuple[int], optional): ``(H, W)`` for which the
            ``anchors`` / ``valid_mask`` buffers are made (official checkpoints
            store them for 640x640). ``None`` registers no buffers.
        feat_strides (Sequence[int]): Strides of the decoder levels (used to
            derive the buffers' feature shapes). Default (8, 16, 32).
        anchor_grid_size (float): Anchor size of level 0. Default 0.05.
        anchor_eps (float): Valid-anchor margin. Default 0.01.
        dn_cfg (dict, optional): Contrastive denoising generator
            (``DFINEContrastiveDenoising``: ``num_denoising``,
            ``label_noise_ratio``, ``box_noise_scale``); ``num_classes`` and
            ``embed_dims`` are filled in.  ``None`` disables denoising.
        allow_partial_checkpoint (bool): ``False`` (default): loading a
            checkpoint of another variant or class count raises one
            ``CheckpointMismatchError`` naming both (see
            :mod:`dfine_mmdet.checkpoint.guard`); ``True``: MMEngine's
            permissive loading, for deliberate partial loads.
        train_cfg, test_cfg, data_preprocessor, init_cfg: As in mmdet.

    Settings shared by several parts are set in ONE place and filled in here
    (as mmdet's ``DeformableDETR`` / ``DINO`` do), see
    :func:`fill_shared_settings` and :func:`fill_in_channels`:
    ``num_classes`` (``bbox_head``) -> ``dn_cfg``;
    ``embed_dims`` (``decoder.layer_cfg``) -> ``bbox_head``, ``dn_cfg``;
    ``num_layers`` (``decoder``) -> ``bbox_head.num_pred_layer``;
    ``activation`` / ``mlp_act`` (``decoder``) -> ``bbox_head``;
    ``feat_strides`` (model) -> ``neck``, and their count ->
    ``decoder.layer_cfg.num_levels``; the neck's ``out_channels`` ->
    ``in_channels``; the FDR coder (``bbox_head.bbox_coder``: ``reg_max``,
    ``reg_scale``, ``up``) is the decoder's and the LQE's.  A config that
    also sets a filled field to a different value gets a ``ValueError``
    naming both fields.
    """

    def __init__(self,
                 *args,
                 in_channels: Optional[Sequence[int]] = None,
                 eval_spatial_size: Optional[Tuple[int, int]] = (640, 640),
                 feat_strides: Sequence[int] = (8, 16, 32),
                 anchor_grid_size: float = 0.05,
                 anchor_eps: float = 0.01,
                 dn_cfg: OptConfigType = None,
                 allow_partial_checkpoint: bool = False,
                 **kwargs) -> None:
        self.in_channels = in_channels
        self.eval_spatial_size = (
            tuple(eval_spatial_size)
            if eval_spatial_size is not None else None)
        self.feat_strides = list(feat_strides)
        self.anchor_grid_size = anchor_grid_size
        self.anchor_eps = anchor_eps
        dn_cfg = copy.deepcopy(dn_cfg)
        for key in ('neck', 'decoder', 'bbox_head'):
            if kwargs.get(key) is not None:
                kwargs[key] = copy.deepcopy(kwargs[key])
        fill_shared_settings(
            kwargs.get('neck'), kwargs.get('decoder'), kwargs.get('bbox_head'),
            dn_cfg, self.feat_strides)
        self.dn_cfg = dn_cfg
        super().__init__(*args, **kwargs)
        # one clear error for a checkpoint of another variant / class count
        install_checkpoint_guard(self, enabled=not allow_partial_checkpoint)

    def _init_layers(self) -> None:
        self.decoder = DFINETransformerDecoder(
            bbox_coder=self.bbox_head.bbox_coder, **self.decoder)
        self.embed_dims = self.decoder.embed_dims
        self.in_channels = fill_in_channels(self.in_channels,
                                            getattr(self, 'neck', None))
        self.num_levels = len(self.in_channels)
        if len(self.feat_strides) != self.num_levels:
            raise ValueError(f'feat_strides {self.feat_strides} and '
                             f'in_channels {self.in_channels} must have the '
                             'same length')
        num_points = self.decoder.layers[0].cross_attn.num_points_list
        if len(num_points) != self.num_levels:
            raise ValueError(
                f'decoder.layer_cfg.num_levels ({len(num_points)}) must equal '
                f'the number of neck outputs ({self.num_levels})')

        self.input_proj = nn.ModuleList()
        for c in self.in_channels:
            if c == self.embed_dims:
                self.input_proj.append(nn.Identity())
            else:
                proj = nn.Sequential()
                proj.add_module('conv',
                                nn.Conv2d(c, self.embed_dims, 1, bias=False))
                proj.add_module('norm', nn.BatchNorm2d(self.embed_dims))
                self.input_proj.append(proj)

        # query selection: LayerNorm(Linear(memory)) (official enc_output)
        self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
        self.memory_trans_norm = nn.LayerNorm(self.embed_dims)

        if self.dn_cfg is not None:
            dn_cfg = dict(self.dn_cfg)
            dn_cfg.pop('type', None)
            self.dn_query_generator = DFINEContrastiveDenoising(**dn_cfg)
        else:
            self.dn_query_generator = None

        self._anchor_cache: Dict[tuple, Tuple[Tensor, Tensor]] = {}
        self._buffer_shapes = None
        if self.eval_spatial_size is not None:
            eval_h, eval_w = self.eval_spatial_size
            self._buffer_shapes = tuple(
                (int(eval_h / s), int(eval_w / s)) for s in self.feat_strides)
            anchors, valid_mask = generate_anchors(self._buffer_shapes,
                                                   self.anchor_grid_size,
                                                   self.anchor_eps)
            self.register_buffer('anchors', anchors)
            self.register_buffer('valid_mask', valid_mask)
        self._init_own_layers()

    def _init_own_layers(self) -> None:
        """Official init of the layers owned here: xavier-uniform
        ``memory_trans_fc`` and decoder input projections."""
        nn.init.xavier_uniform_(self.memory_trans_fc.weight)
        for proj in self.input_proj:
            if isinstance(proj, nn.Sequential):
                nn.init.xavier_uniform_(proj.conv.weight)

    def init_weights(self) -> None:
        """mmengine init of the sub-modules, then the official init of the
        layers owned here (the head and decoder re-apply theirs)."""
        super().init_weights()
        self._init_own_layers()

    # ------------------------------------------------------------------ #
    def get_anchors(self, spatial_shapes: SpatialShapes,
                    device) -> Tuple[Tensor, Tensor]:
        """Anchors ``[1, N, 4]`` (logit cxcywh) and valid mask ``[1, N, 1]``
        for the actual feature shapes.

        At inference the checkpoint buffers are used when ``spatial_shapes``
        equals the shapes they were made for; otherwise (and in training, as
        the official code) anchors are generated and cached per shape.
        Generated anchors are float32 whatever the memory dtype (as
        officially, also under autocast).
        """
        shapes = tuple((int(h), int(w)) for h, w in spatial_shapes)
        if (not self.training and self._buffer_shapes is not None
                and shapes == self._buffer_shapes):
            return self.anchors, self.valid_mask
        key = (shapes, str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = generate_anchors(
                shapes, self.anchor_grid_size, self.anchor_eps, device=device)
        return self._anchor_cache[key]

    # ------------------------------------------------------------------ #
    def forward_transformer(self,
                            img_feats: Tuple[Tensor],
                            batch_data_samples: OptSampleList = None) -> Dict:
        """``pre_transformer -> forward_encoder -> pre_decoder ->
        forward_decoder`` (``pre_decoder`` also needs the data samples for
        denoising, as in DINO)."""
        encoder_inputs_dict, decoder_inputs_dict = self.pre_transformer(
            img_feats, batch_data_samples)
        encoder_outputs_dict = self.forward_encoder(**encoder_inputs_dict)
        tmp_dec_in, head_inputs_dict = self.pre_decoder(
            **encoder_outputs_dict, batch_data_samples=batch_data_samples)
        decoder_inputs_dict.update(tmp_dec_in)
        decoder_outputs_dict = self.forward_decoder(**decoder_inputs_dict)
        head_inputs_dict.update(decoder_outputs_dict)
        return head_inputs_dict

    def pre_transformer(
            self,
            img_feats: Tuple[Tensor],
            batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """Project the neck outputs to ``D`` channels and flatten them.

        Args:
            img_feats (tuple[Tensor]): ``[B, C_l, H_l, W_l]`` per level, high
                resolution first.

        Returns:
            tuple[dict]: encoder inputs ``memory`` ``[B, N, D]`` (levels
            concatenated, row-major) and ``spatial_shapes``; decoder inputs
            ``spatial_shapes``.
        """
        if len(img_feats) != self.num_levels:
            raise ValueError(f'DFINE expects {self.num_levels} feature levels '
                             f'from the neck, got {len(img_feats)}')
        memory, spatial_shapes = [], []
        for proj, feat in zip(self.input_proj, img_feats):
            feat = proj(feat)
            h, w = feat.shape[-2:]
            spatial_shapes.append((h, w))
            memory.append(feat.flatten(2).permute(0, 2, 1))
        memory = torch.cat(memory, 1)
        encoder_inputs_dict = dict(
            memory=memory, spatial_shapes=spatial_shapes)
        decoder_inputs_dict = dict(spatial_shapes=spatial_shapes)
        return encoder_inputs_dict, decoder_inputs_dict

    def forward_encoder(self, memory: Tensor,
                        spatial_shapes: SpatialShapes) -> Dict:
        """Identity: D-FINE's AIFI encoder runs inside the neck."""
        return dict(memory=memory, spatial_shapes=spatial_shapes)

    def pre_decoder(
        self,
        memory: Tensor,
        spatial_shapes: SpatialShapes,
        batch_data_samples: OptSampleList = None,
    ) -> Tuple[Dict, Dict]:
        """Two-stage query selection (+ denoising queries in training).

        ``memory' = valid_mask * memory``; ``out = LayerNorm(Linear(
        memory'))``; ``logits = enc_cls(out)``; the ``num_queries`` tokens
        with the highest max-over-classes logit give the content queries
        (``out``, detached) and the reference boxes ``enc_reg(out) +
        anchor`` (logit space, detached).

        Returns:
            tuple[dict]: decoder inputs (``query`` ``[B, T+Q, D]``,
            ``ref_unact`` ``[B, T+Q, 4]``, ``memory`` (unmasked),
            ``attn_mask`` ``[T+Q, T+Q]`` bool or None) and head inputs
            (``enc_topk_logits`` ``[B, Q, C]`` and ``enc_topk_bboxes``
            ``[B, Q, 4]`` sigmoid cxcywh in training, ``dn_meta``,
            ``enc_topk_index`` ``[B, Q]``).  ``T`` = number of denoising
            queries (0 at inference).
        """
        bs = memory.shape[0]
        anchors, valid_mask = self.get_anchors(spatial_shapes, memory.device)
        # expand (not a Python `if bs > 1`): tracing must keep the batch dim
        # symbolic for dynamic-batch ONNX export.
        anchors = anchors.expand(bs, -1, -1)
        masked = valid_mask.to(memory.dtype) * memory
        output_memory = self.memory_trans_norm(self.memory_trans_fc(masked))
        enc_logits = self.bbox_head.enc_cls_branch(output_memory)

        _, topk_index = torch.topk(
            enc_logits.max(-1).values, self.num_queries, dim=-1)
        topk_memory = output_memory.gather(
            1,
            topk_index.unsqueeze(-1).repeat(1, 1, output_memory.shape[-1]))
        topk_anchors = anchors.gather(
            1,
            topk_index.unsqueeze(-1).repeat(1, 1, anchors.shape[-1]))
        ref_unact = self.bbox_head.enc_reg_branch(topk_memory) + topk_anchors

        head_inputs_dict = dict(enc_topk_index=topk_index)
        if self.training:
            head_inputs_dict['enc_topk_logits'] = enc_logits.gather(
                1,
                topk_index.unsqueeze(-1).repeat(1, 1, enc_logits.shape[-1]))
            head_inputs_dict['enc_topk_bboxes'] = F.sigmoid(ref_unact)

        query = topk_memory.detach()
        ref_unact = ref_unact.detach()
        attn_mask = dn_meta = None
        if self.training and self.dn_query_generator is not None:
            gt_labels, gt_boxes = self._dn_targets(batch_data_samples)
            dn_query, dn_ref_unact, attn_mask, dn_meta = \
                self.dn_query_generator(gt_labels, gt_boxes,
                                        self.num_queries)
            if dn_query is not None:
                query = torch.cat([dn_query, query], dim=1)
                ref_unact = torch.cat([dn_ref_unact, ref_unact], dim=1)
        head_inputs_dict['dn_meta'] = dn_meta
        decoder_inputs_dict = dict(
            query=query,
            ref_unact=ref_unact,
            memory=memory,
            attn_mask=attn_mask)
        return decoder_inputs_dict, head_inputs_dict

    def _dn_targets(
        self, batch_data_samples: OptSampleList
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """GT labels and normalised cxcywh boxes for the denoising queries
        (the head's loss targets)."""
        if batch_data_samples is None:
            raise ValueError('training D-FINE with denoising needs '
                             'batch_data_samples with gt_instances')
        targets = self.bbox_head.get_targets(
            [s.gt_instances for s in batch_data_samples],
            [s.metainfo for s in batch_data_samples])
        return [t['labels'] for t in targets], [t['boxes'] for t in targets]

    def forward_decoder(self,
                        query: Tensor,
                        ref_unact: Tensor,
                        memory: Tensor,
                        spatial_shapes: SpatialShapes,
                        attn_mask: Optional[Tensor] = None) -> Dict:
        """Run the FDR decoder with the head's branches.

        Returns:
            dict: ``hidden_states``, ``pred_boxes``, ``pred_corners`` (each
            ``[L', B, T+Q, ...]``), ``ref_points``, ``pre_boxes`` (see
            :meth:`DFINETransformerDecoder.forward`).
        """
        return self.decoder(
            query=query,
            ref_unact=ref_unact,
            memory=memory,
            spatial_shapes=spatial_shapes,
            reg_branches=self.bbox_head.reg_branches,
            pre_reg_branch=self.bbox_head.pre_reg_branch,
            attn_mask=attn_mask)
