"""FDR + GO-LSD inside mmdet's two-stage Deformable DETR with box refinement
(configs/deformable_detr_fdr/).

A small variant of the toy configs (ResNet-18 at 1/8 width, 1 encoder / 3
decoder layers, 10 queries, the session toy set; 256-d because mmdet's
proposal embedding fixes it) is

* trained 40 AdamW steps on one fixed batch: every FDR term (FGL on every
  layer, DDF on the non-final ones) and the class-agnostic top-k encoder
  terms present and finite, total loss and the last layer's L1 box loss
  decreasing;
* trained with the configs' class loss, D-FINE's VFL (``loss_vfl*`` on
  every output, the encoder's included) and with FocalLoss on request;
* run through ``predict``: boxes inside the image; ``mode='tensor'`` returns
  the decoder's FDR boxes;
* checked in the decoder: layer k's corner logits are layer k-1's plus its
  branch's residual, every box is the coder's decode around the fixed
  two-stage proposal, and the encoder outputs given to the head are the
  top-k proposals the decoder starts from;
* loaded from a plain mmdet Deformable DETR state dict through MMEngine's
  non-strict ``load_checkpoint``: the reported mismatches are exactly the
  last Linear of the decoder's reg branches.

Also: the COCO config builds with the FDR parts and VFL, the toy FDR config
differs from the plain one only by the FDR deltas and VFL, misconfigurations
name the field.
"""
import copy
import logging
import math
import os.path as osp
import re

import pytest
import torch
from mixed_fixtures import (build_detector, check_class_loss_terms,
                            first_batch, focal_loss_cfg, small_toy_cfg)
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(ROOT, 'configs', 'deformable_detr_fdr')
COCO_CFG = osp.join(
    CFG_DIR, 'deformable-detr-refine-twostage_r50_fdr_16xb2-50e_coco.py')
PLAIN_TOY = osp.join(CFG_DIR, 'toy',
                     'deformable-detr-refine-twostage_r18_toy.py')
FDR_TOY = osp.join(CFG_DIR, 'toy',
                   'deformable-detr-refine-twostage_r18_fdr_toy.py')

NUM_LAYERS = 3
SMALL = {
    'model.num_queries': 10,
    'model.backbone.base_channels': 8,
    'model.neck.in_channels': [16, 32, 64],
    'model.encoder.num_layers': 1,
    'model.encoder.layer_cfg.ffn_cfg.feedforward_channels': 64,
    'model.decoder.num_layers': NUM_LAYERS,
    'model.decoder.layer_cfg.ffn_cfg.feedforward_channels': 64,
    'model.test_cfg.max_per_img': 10,
    'train_dataloader.batch_size': 2,
    'val_dataloader.batch_size': 4,
}


@pytest.fixture(scope='module')
def fdr_cfg(toy_coco):
    return small_toy_cfg(FDR_TOY, toy_coco, SMALL)


@pytest.fixture(scope='module')
def plain_cfg(toy_coco):
    return small_toy_cfg(PLAIN_TOY, toy_coco, SMALL)


def test_train_fixed_batch_loss_decreases(fdr_cfg):
    from mmengine.optim import OptimWrapper

    from dfine_mmdet.models.layers import FDRDeformableDetrTransformerDecoder
    cfg = copy.deepcopy(fdr_cfg)
    # Deformable DETR's FocalLoss here: this checks the FDR regression path
    # on a fixed batch, where a focal class loss falls monotonically while
    # VFL's targets (the IoUs) rise as the boxes improve (the config's VFL:
    # test_classification_loss_vfl_by_config_focal_on_request)
    cfg.model.bbox_head.loss_cls = focal_loss_cfg(2.0)
    model = build_detector(cfg)
    assert type(model).__name__ == 'DeformableDETRFDR'
    assert isinstance(model.decoder, FDRDeformableDetrTransformerDecoder)
    batch = first_batch(cfg.train_dataloader)
    optim = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4),
        clip_grad=dict(max_norm=0.1))
    model.train()
    expected = {
        'loss_cls', 'loss_bbox', 'loss_giou', 'loss_fgl', 'loss_cls_enc_0',
        'loss_bbox_enc_0', 'loss_giou_enc_0'
    }
    for i in range(NUM_LAYERS - 1):
        expected |= {
            f'loss_fgl_aux_{i}', f'loss_ddf_aux_{i}', f'loss_cls_aux_{i}',
            f'loss_bbox_aux_{i}'
        }
    totals, l1 = [], []
    for _ in range(40):
        losses = model.train_step(batch, optim)
        missing = expected - set(losses)
        assert not missing, (sorted(missing), sorted(losses))
        assert not any('_dn' in k for k in losses), sorted(losses)
        bad = {
            k: float(v)
            for k, v in losses.items() if not math.isfinite(float(v.detach()))
        }
        assert not bad, bad
        totals.append(float(losses['loss']))
        l1.append(float(losses['loss_bbox']))
    first, last = sum(totals[:5]) / 5, sum(totals[-5:]) / 5
    print(f'total loss {first:.3f} -> {last:.3f}; L1 {l1[0]:.3f} -> '
          f'{l1[-1]:.3f}')
    assert last < 0.85 * first, totals
    assert sum(l1[-5:]) / 5 < 0.8 * sum(l1[:5]) / 5, l1
    assert float(losses['loss_ddf_aux_0']) > 0, losses


def test_classification_loss_vfl_by_config_focal_on_request(fdr_cfg):
    """The FDR configs' class loss is D-FINE's DFINEVarifocalLoss (terms
    ``loss_vfl*`` on every output, the encoder's class-agnostic proposals
    included; docs/fdr_in_detrs.md says why); Deformable DETR's FocalLoss
    (weight 2) still works when a config asks for it (``loss_cls*``)."""
    check_class_loss_terms(
        fdr_cfg,
        ('', '_enc_0') + tuple(f'_aux_{i}' for i in range(NUM_LAYERS - 1)),
        focal_weight=2.0)


def _transformer_outputs(model, cfg, training=False):
    batch = first_batch(
        cfg.val_dataloader if not training else cfg.train_dataloader)
    model.train(training)
    data = model.data_preprocessor(batch, training)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        return model.forward_transformer(feats, data['data_samples']), data


def test_decoder_is_fdr_around_the_proposal(fdr_cfg):
    """Layer k's corners = layer k-1's + its branch; every box is the
    coder's decode of its corners around references[0]; a zeroed branch
    repeats the previous box; references[0] is the top-k proposal whose
    encoder outputs the head is trained with."""
    model = build_detector(fdr_cfg)
    with torch.no_grad():
        for branch in model.bbox_head.reg_branches:
            branch[-1].weight.normal_(0, 0.3)
        model.bbox_head.reg_branches[1][-1].weight.zero_()
        model.bbox_head.reg_branches[1][-1].bias.zero_()
    out, _ = _transformer_outputs(model, fdr_cfg)
    refs, corners = out['references'], out['pred_corners']
    hidden = out['hidden_states']
    coder = model.bbox_head.bbox_coder
    assert len(refs) == NUM_LAYERS + 1 and corners.shape[0] == NUM_LAYERS
    for k in range(NUM_LAYERS):
        step = model.bbox_head.reg_branches[k](hidden[k])
        expect = step if k == 0 else corners[k - 1] + step
        torch.testing.assert_close(corners[k], expect)
        torch.testing.assert_close(refs[k + 1],
                                   coder.decode(refs[0], corners[k]))
    torch.testing.assert_close(corners[1], corners[0])
    torch.testing.assert_close(refs[2], refs[1])
    assert not torch.allclose(refs[1], refs[0])

    out, data = _transformer_outputs(model, fdr_cfg, training=True)
    torch.testing.assert_close(out['enc_outputs_coord'], out['references'][0])
    assert out['enc_outputs_class'].shape[:2] == out['references'][0].shape[:2]


def test_predict_and_tensor_mode(fdr_cfg):
    model = build_detector(fdr_cfg)
    with torch.no_grad():
        for branch in model.bbox_head.reg_branches:
            branch[-1].weight.normal_(0, 0.5)
    model.eval()
    batch = first_batch(fdr_cfg.val_dataloader)
    with torch.no_grad():
        outputs = model.val_step(batch)
        data = model.data_preprocessor(batch, False)
        logits, boxes = model(
            data['inputs'], data['data_samples'], mode='tensor')
        out, _ = _transformer_outputs(model, fdr_cfg)
    for o in outputs:
        h, w = o.ori_shape
        b = o.pred_instances.bboxes
        assert len(b) == 10
        assert (b[:, 0::2] >= 0).all() and (b[:, 0::2] <= w).all()
        assert (b[:, 1::2] >= 0).all() and (b[:, 1::2] <= h).all()
    assert logits.shape[:3] == boxes.shape[:3] == (NUM_LAYERS, 4, 10)
    torch.testing.assert_close(boxes, torch.stack(out['references'][1:]))


class _Records(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_load_plain_deformable_detr_checkpoint(plain_cfg, fdr_cfg, tmp_path):
    from mmengine.runner import load_checkpoint
    plain = build_detector(plain_cfg, seed=1)
    assert type(plain).__name__ == 'DeformableDETR'
    gen = torch.Generator().manual_seed(0)
    sd = {
        k: (v + 0.01 * torch.randn(v.shape, generator=gen)
            if v.is_floating_point() else v.clone())
        for k, v in plain.state_dict().items()
    }
    path = str(tmp_path / 'ddetr_plain.pth')
    torch.save({'state_dict': sd}, path)
    model = build_detector(fdr_cfg, seed=0)
    logger = logging.getLogger('test_ddetr_fdr_load')
    handler = _Records()
    logger.addHandler(handler)
    try:
        load_checkpoint(
            model, path, map_location='cpu', strict=False, logger=logger)
    finally:
        logger.removeHandler(handler)
    report = '\n'.join(handler.messages)
    mismatched = set(re.findall(r'size mismatch for (\S+?):', report))
    expected = {
        f'bbox_head.reg_branches.{i}.4.{p}'
        for i in range(NUM_LAYERS)
        for p in ('weight', 'bias')
    }
    assert mismatched == expected, report
    assert 'missing keys' not in report and 'unexpected key' not in report, \
        report
    own = model.state_dict()
    assert set(own) == set(sd)
    differ = [
        k for k in sd if k not in expected and not torch.equal(own[k], sd[k])
    ]
    assert not differ, differ


def test_configs():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import dfine_mmdet  # noqa: F401
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(COCO_CFG)
    assert cfg.model.type == 'DeformableDETRFDR'
    assert cfg.model.with_box_refine and cfg.model.as_two_stage
    model = MODELS.build(cfg.model)
    assert type(model.bbox_head).__name__ == 'DeformableDETRFDRHead'
    assert model.bbox_head.reg_branches[0][-1].out_features == 4 * 33
    assert model.bbox_head.reg_branches[6][-1].out_features == 4
    # class loss: D-FINE's IoU-aware VFL instead of Deformable DETR's focal
    assert cfg.model.bbox_head.loss_cls == dict(
        type='DFINEVarifocalLoss', alpha=0.75, gamma=2.0, loss_weight=1.0)
    assert type(model.bbox_head.loss_cls).__name__ == 'DFINEVarifocalLoss'
    # the toy FDR config differs from the plain one by the FDR deltas only
    plain = Config.fromfile(PLAIN_TOY).to_dict()
    fdr = Config.fromfile(FDR_TOY).to_dict()
    assert fdr.pop('custom_imports')['imports'] == ['dfine_mmdet']
    plain.pop('custom_imports', None)
    assert fdr['model'].pop('type') == 'DeformableDETRFDR'
    assert plain['model'].pop('type') == 'DeformableDETR'
    assert fdr['model']['bbox_head'].pop('type') == 'DeformableDETRFDRHead'
    assert plain['model']['bbox_head'].pop('type') == 'DeformableDETRHead'
    assert plain['model']['bbox_head'].pop('loss_cls')['type'] == 'FocalLoss'
    assert fdr['model']['bbox_head'].pop('loss_cls') == dict(
        type='DFINEVarifocalLoss', alpha=0.75, gamma=2.0, loss_weight=1.0)
    assert fdr['model'].pop('train_cfg') == dict(
        assigner=dict(type='DFINEHungarianAssigner'))
    plain['model'].pop('train_cfg')
    assert fdr == plain


def test_misconfigurations_name_the_field(fdr_cfg):
    cfg = copy.deepcopy(fdr_cfg)
    cfg.model.with_box_refine = False
    with pytest.raises(ValueError, match='with_box_refine'):
        build_detector(cfg)
    cfg = copy.deepcopy(fdr_cfg)
    cfg.model.bbox_head.pre_refine = True
    with pytest.raises(ValueError, match='pre_refine'):
        build_detector(cfg)
