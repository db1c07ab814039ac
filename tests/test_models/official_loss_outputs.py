"""Test helper: the official D-FINE training-output dict -> the typed
records of :meth:`GOLSDLossMixin.go_lsd_loss`.

The loss fixtures (``../shared/parity/dfine_*_loss_case*.pt``) hold exactly
what the official decoder fed to ``DFINECriterion``: a nested dict
(``pred_logits`` / ``pred_boxes`` / ``pred_corners`` / ``ref_points`` of the
last layer, ``up``, ``reg_scale``, ``aux_outputs``, ``pre_outputs``,
``enc_aux_outputs``, ``dn_outputs``, ``dn_pre_outputs``, ``dn_meta``).  The
model never builds that dict; this adapter exists only so the parity tests
can feed the fixtures to the loss.  The FDR references are the ones the
official criterion encodes its FGL targets from (the last layer's, the first
denoising layer's); ``up`` / ``reg_scale`` belong in the head's coder
(:func:`coder_cfg`).
"""
import torch

from dfine_mmdet.models.dense_heads.supervision_plan import (BoxPredictions,
                                                             FDRPredictions)


def coder_cfg(outputs: dict) -> dict:
    """``FDRBBoxCoder`` config with the official outputs' ``up`` /
    ``reg_scale`` (int64 in official checkpoints: kept an int)."""
    reg_scale = outputs['reg_scale'].reshape(-1)[0].item()
    return dict(
        type='FDRBBoxCoder',
        reg_scale=reg_scale,
        up=outputs['up'].reshape(-1)[0].item())


def _layers(layer_dicts: list, refs: torch.Tensor) -> FDRPredictions:
    return FDRPredictions(
        torch.stack([o['pred_logits'] for o in layer_dicts]),
        torch.stack([o['pred_boxes'] for o in layer_dicts]),
        torch.stack([o['pred_corners'] for o in layer_dicts]), refs)


def _boxes(out: dict) -> BoxPredictions:
    return BoxPredictions(out['pred_logits'], out['pred_boxes'])


def from_official(outputs: dict) -> dict:
    """Keyword arguments of ``go_lsd_loss`` / ``supervision_plan`` (all but
    ``targets``) from an official training-output dict."""
    kwargs = dict(
        layers=_layers(
            list(outputs.get('aux_outputs', [])) + [outputs],
            outputs['ref_points']),
        enc=[_boxes(o) for o in outputs.get('enc_aux_outputs', [])])
    if outputs.get('pre_outputs') is not None:
        kwargs['pre'] = _boxes(outputs['pre_outputs'])
    dn = outputs.get('dn_outputs')
    if dn:
        kwargs['dn_layers'] = _layers(dn, dn[0]['ref_points'])
        kwargs['dn_meta'] = outputs['dn_meta']
        if outputs.get('dn_pre_outputs') is not None:
            kwargs['dn_pre'] = _boxes(outputs['dn_pre_outputs'])
    return kwargs
