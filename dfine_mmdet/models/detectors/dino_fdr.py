"""mmdet's DINO with D-FINE's FDR box refinement and GO-LSD training.

:class:`DINOFDR` is mmdet's :class:`~mmdet.models.detectors.DINO` (backbone,
neck, deformable encoder, two-stage query selection, contrastive denoising
queries of ``CdnQueryGenerator``, decoder layers: all unchanged) with two
parts swapped:

* the decoder's refinement loop is FDR
  (:class:`~dfine_mmdet.models.layers.FDRDinoTransformerDecoder`: residual
  edge distributions decoded around the initial reference with the head's
  ``FDRBBoxCoder``) instead of box deltas;
* the head is :class:`~dfine_mmdet.models.dense_heads.DINOFDRHead` (corner
  branches, FGL + DDF over the GO-LSD union, D-FINE's loss mixin).
  With ``bbox_head.pre_refine=True`` the head's layer-0 pre head
  (``pre_reg_branch``) refines the two-stage proposal first and its box is
  the fixed FDR reference, as in D-FINE's decoder.

Parameter names are DINO's, so a plain DINO checkpoint loads into everything
but the last Linear of the decoder's ``bbox_head.reg_branches[i]`` (``4 ->
4 (reg_max + 1)`` outputs), which MMEngine's non-strict loading (``load_from``
/ ``load_checkpoint``) reports as size mismatches and leaves at its
initialisation (zero: the reference box).  With ``pre_refine`` the pre head
(no key in a DINO checkpoint) is initialised from the checkpoint's
``bbox_head.reg_branches.0``, DINO's layer-0 delta branch, which computes
the same layer-0 box (see ``DINOFDRHead._load_from_state_dict``).
"""
import copy
from typing import Dict, Optional

from mmdet.models.detectors import DINO
from mmdet.registry import MODELS
from mmdet.utils import OptConfigType
from torch import Tensor

from ..layers.fdr_dino_decoder import FDRDinoTransformerDecoder
from .dfine import assert_fill


def fill_fdr_settings(decoder: Optional[dict],
                      bbox_head: Optional[dict]) -> None:
    """Fill ``bbox_head.embed_dims`` from
    ``decoder.layer_cfg.self_attn_cfg.embed_dims`` (in place,
    :func:`assert_fill`); the FDR coder (``reg_max``, ``reg_scale``, ``up``)
    is ``bbox_head.bbox_coder`` only."""
    if decoder is None or bbox_head is None:
        return
    for key in ('reg_max', 'reg_scale', 'up'):
        if key in decoder:
            raise ValueError(f'model.decoder.{key} is not a decoder field: '
                             f'set model.bbox_head.bbox_coder.{key}')
    attn = decoder.get('layer_cfg', {}).get('self_attn_cfg', {})
    assert_fill([(bbox_head, 'model.bbox_head.embed_dims',
                  attn.get('embed_dims', 256),
                  'model.decoder.layer_cfg.self_attn_cfg.embed_dims')])


@MODELS.register_module()
class DINOFDR(DINO):
    """DINO + FDR + GO-LSD (see the module docstring).

    Same arguments as mmdet's ``DINO``; ``bbox_head`` is a ``DINOFDRHead``
    whose ``bbox_coder`` is the one place of ``reg_max`` / ``reg_scale`` /
    ``up`` (see :func:`fill_fdr_settings`).
    """

    def __init__(self,
                 *args,
                 decoder: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 dn_cfg: OptConfigType = None,
                 **kwargs) -> None:
        # copies: DINO / DeformableDETR fill these dicts in place, which would
        # make a second build from the same config fail
        decoder = copy.deepcopy(decoder)
        bbox_head = copy.deepcopy(bbox_head)
        dn_cfg = copy.deepcopy(dn_cfg)
        fill_fdr_settings(decoder, bbox_head)
        super().__init__(
            *args,
            decoder=decoder,
            bbox_head=bbox_head,
            dn_cfg=dn_cfg,
            **kwargs)

    def _init_layers(self) -> None:
        """DINO's layers with the decoder swapped for the FDR one (same
        constructor arguments and parameters)."""
        decoder_cfg = dict(self.decoder)
        # an FDR-only decoder option, unknown to mmdet's DINO decoder
        self.decoder.pop('detach_corners', None)
        super()._init_layers()
        self.decoder = FDRDinoTransformerDecoder(**decoder_cfg)

    def forward_decoder(self,
                        query: Tensor,
                        memory: Tensor,
                        memory_mask: Tensor,
                        reference_points: Tensor,
                        spatial_shapes: Tensor,
                        level_start_index: Tensor,
                        valid_ratios: Tensor,
                        dn_mask: Optional[Tensor] = None,
                        **kwargs) -> Dict:
        """``DINO.forward_decoder`` with the head's FDR coder and (with
        ``bbox_head.pre_refine``) its pre head.

        Returns:
            dict: ``hidden_states`` ``[L, B, T+Q, D]``, ``references`` (list
            of ``L + 1`` ``[B, T+Q, 4]``: the fixed FDR reference, then each
            layer's FDR box), ``pred_corners`` ``[L, B, T+Q, 4 (reg_max +
            1)]`` and ``pre_boxes`` (``[B, T+Q, 4]`` layer-0 pre-head boxes,
            None without ``pre_refine``).
        """
        hidden_states, references, corners, pre_boxes = self.decoder(
            query=query,
            value=memory,
            key_padding_mask=memory_mask,
            self_attn_mask=dn_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches,
            bbox_coder=self.bbox_head.bbox_coder,
            pre_reg_branch=self.bbox_head.pre_reg_branch,
            **kwargs)
        return dict(
            hidden_states=hidden_states,
            references=list(references),
            pred_corners=corners,
            pre_boxes=pre_boxes)
