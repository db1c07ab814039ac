"""Deformable DETR head with FDR box branches, trained with FGL + DDF over
the GO-LSD union (D-FINE's recipe applied to mmdet's two-stage Deformable
DETR with box refinement).

This is :class:`~dfine_mmdet.models.dense_heads.DINOFDRHead` (corner reg
branches, the encoder's delta branch, the shared
:class:`~dfine_mmdet.models.dense_heads.go_lsd_loss.GOLSDLossMixin`: one
loss path) with what Deformable DETR differs in:

* no denoising queries (``loss`` takes no ``dn_meta``);
* the two-stage encoder head is class-agnostic as in mmdet's
  ``DeformableDETRHead`` (its proposals are ranked by the first class
  logit and supervised with label 0 for every object): the mixin's
  ``class_agnostic_enc``;
* no pre head (the decoder has none).

Boxes are normalised ``(cx, cy, w, h)`` by each image's ``img_shape``.
"""
from typing import Dict, Optional, Sequence

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from torch import Tensor

from .dino_fdr_head import DINOFDRHead


@MODELS.register_module()
class DeformableDETRFDRHead(DINOFDRHead):
    """Deformable DETR head with FDR corner branches and GO-LSD losses.

    Same arguments as :class:`DINOFDRHead` except ``pre_refine`` (must stay
    False).  ``num_pred_layer`` / ``as_two_stage`` / ``share_pred_layer``
    are set by :class:`~dfine_mmdet.models.detectors.DeformableDETRFDR` as
    mmdet's ``DeformableDETR`` sets them.
    """

    class_agnostic_enc = True

    def __init__(self, *args, pre_refine: bool = False, **kwargs) -> None:
        if pre_refine:
            raise ValueError(f'{type(self).__name__}: pre_refine is not '
                             'supported (the Deformable DETR FDR decoder '
                             'has no pre head)')
        super().__init__(*args, pre_refine=False, **kwargs)

    def loss(self, hidden_states: Tensor, references: Sequence[Tensor],
             pred_corners: Tensor, enc_outputs_class: Optional[Tensor],
             enc_outputs_coord: Optional[Tensor],
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """``DeformableDETRHead.loss`` with the corner logits.

        Args:
            hidden_states (Tensor): ``[L, B, Q, D]``.
            references (Tensor | list[Tensor]): ``L + 1`` x ``[B, Q, 4]``:
                the fixed FDR reference, then each layer's FDR box.
            pred_corners (Tensor): ``[L, B, Q, 4 (reg_max + 1)]``.
            enc_outputs_class (Tensor | None): ``[B, N, C]`` encoder logits
                of every memory position (class-agnostic: channel 0).
            enc_outputs_coord (Tensor | None): ``[B, N, 4]`` their boxes.
            batch_data_samples (list[DetDataSample]): With ``gt_instances``.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_giou``,
            ``loss_fgl``, ``*_aux_i`` (+ ``loss_ddf``), ``*_enc_0``.
        """
        return super().loss(
            hidden_states,
            references,
            pred_corners,
            enc_outputs_class,
            enc_outputs_coord,
            batch_data_samples,
            dn_meta=None)
