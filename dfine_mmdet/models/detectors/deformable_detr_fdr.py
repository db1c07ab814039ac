"""mmdet's two-stage Deformable DETR (box refinement) with D-FINE's FDR box
refinement and GO-LSD training.

:class:`DeformableDETRFDR` is mmdet's
:class:`~mmdet.models.detectors.DeformableDETR` with
``as_two_stage=True`` and ``with_box_refine=True`` (backbone, neck,
deformable encoder, two-stage proposals, decoder layers: unchanged) with two
parts swapped, as :class:`~dfine_mmdet.models.detectors.DINOFDR` does for
DINO:

* the decoder's refinement is FDR
  (:class:`~dfine_mmdet.models.layers.FDRDeformableDetrTransformerDecoder`:
  residual edge distributions decoded around the two-stage proposal with
  the head's ``FDRBBoxCoder``);
* the head is :class:`~dfine_mmdet.models.dense_heads.DeformableDETRFDRHead`
  (corner branches, FGL + DDF over the GO-LSD union, the shared loss mixin).

One training difference from mmdet's Deformable DETR: the encoder's
(class-agnostic) proposal loss is computed on the ``num_queries`` top-k
proposals, which are the decoder's queries, instead of on every memory
position: GO-LSD's union of matches is a set of query indices, and every
output in it must index the same queries (as in D-FINE and DINO, whose
encoder losses are top-k).

Parameter names are Deformable DETR's: a plain mmdet checkpoint loads into
everything but the last Linear of ``bbox_head.reg_branches.{i}`` for the
decoder layers (``4 -> 4 (reg_max + 1)``), reported as size mismatches.
"""
import copy
from typing import Dict, Tuple

import torch
from mmdet.models.detectors import DeformableDETR
from mmdet.registry import MODELS
from mmdet.utils import OptConfigType
from torch import Tensor

from ..layers.fdr_deformable_decoder import FDRDeformableDetrTransformerDecoder
from .dino_fdr import fill_fdr_settings


@MODELS.register_module()
class DeformableDETRFDR(DeformableDETR):
    """Two-stage Deformable DETR + FDR + GO-LSD (see the module docstring).

    Same arguments as mmdet's ``DeformableDETR``; ``as_two_stage`` and
    ``with_box_refine`` must be True (FDR refines 4-d reference boxes layer
    by layer with one branch per layer); ``bbox_head`` is a
    ``DeformableDETRFDRHead``.
    """

    def __init__(self,
                 *args,
                 decoder: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 with_box_refine: bool = True,
                 as_two_stage: bool = True,
                 **kwargs) -> None:
        if not (with_box_refine and as_two_stage):
            raise ValueError(
                f'{type(self).__name__}: FDR needs with_box_refine=True and '
                f'as_two_stage=True (got with_box_refine={with_box_refine}, '
                f'as_two_stage={as_two_stage}): the FDR reference is the '
                'two-stage proposal box and every layer has its own branch')
        # copies: DeformableDETR fills these dicts in place
        decoder = copy.deepcopy(decoder)
        bbox_head = copy.deepcopy(bbox_head)
        fill_fdr_settings(decoder, bbox_head)
        super().__init__(
            *args,
            decoder=decoder,
            bbox_head=bbox_head,
            with_box_refine=with_box_refine,
            as_two_stage=as_two_stage,
            **kwargs)

    def _init_layers(self) -> None:
        """Deformable DETR's layers with the decoder swapped for the FDR one
        (same constructor arguments and parameters)."""
        decoder_cfg = self.decoder
        super()._init_layers()
        self.decoder = FDRDeformableDetrTransformerDecoder(**decoder_cfg)

    def pre_decoder(self, memory: Tensor, memory_mask: Tensor,
                    spatial_shapes: Tensor) -> Tuple[Dict, Dict]:
        """``DeformableDETR.pre_decoder``; in training the encoder outputs
        for the head are those of the top-k proposals (the queries), see the
        module docstring.

        Returns:
            tuple[dict, dict]: decoder inputs (``query``, ``query_pos``,
            ``memory``, ``reference_points`` ``[B, Q, 4]``) and head inputs
            (``enc_outputs_class`` ``[B, Q, C]``, ``enc_outputs_coord``
            ``[B, Q, 4]`` in training; empty otherwise).
        """
        decoder_inputs, head_inputs = super().pre_decoder(
            memory, memory_mask, spatial_shapes)
        if head_inputs:
            cls, coord = head_inputs['enc_outputs_class'], \
                head_inputs['enc_outputs_coord']
            # the same top-k as DeformableDETR.pre_decoder (first logit)
            topk = torch.topk(cls[..., 0], self.num_queries, dim=1)[1]
            head_inputs = dict(
                enc_outputs_class=torch.gather(
                    cls, 1, topk[..., None].expand(-1, -1, cls.shape[-1])),
                enc_outputs_coord=torch.gather(
                    coord, 1, topk[..., None].expand(-1, -1, 4)))
        return decoder_inputs, head_inputs

    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        memory_mask: Tensor, reference_points: Tensor,
                        spatial_shapes: Tensor, level_start_index: Tensor,
                        valid_ratios: Tensor) -> Dict:
        """``DeformableDETR.forward_decoder`` with the head's FDR coder.

        Returns:
            dict: ``hidden_states`` ``[L, B, Q, D]``, ``references`` (list
            of ``L + 1`` ``[B, Q, 4]``: the fixed FDR reference, then each
            layer's FDR box) and ``pred_corners`` ``[L, B, Q, 4 (reg_max +
            1)]``.
        """
        hidden_states, references, corners = self.decoder(
            query=query,
            query_pos=query_pos,
            value=memory,
            key_padding_mask=memory_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches,
            bbox_coder=self.bbox_head.bbox_coder)
        return dict(
            hidden_states=hidden_states,
            references=list(references),
            pred_corners=corners)
