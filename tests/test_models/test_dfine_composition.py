"""D-FINE's parts composed through the config: the head owns the FDR coder,
matching and losses (swappable), and shared settings come from one place."""
import copy
import os.path as osp

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from dfine_mmdet.models.dense_heads.go_lsd_loss import GOLSDLossMixin
from mmdet.registry import MODELS

TOY_CFG = osp.join(
    osp.dirname(__file__), '..', '..', 'configs', 'dfine', 'toy',
    'dfine_hgnetv2_n_toy.py')
IMG = 64


def _toy_model_cfg():
    init_default_scope('mmdet')
    cfg = Config.fromfile(TOY_CFG)
    m = copy.deepcopy(cfg.model)
    m.data_preprocessor.pop('batch_augments', None)
    m.eval_spatial_size = (IMG, IMG)
    m.num_queries = 20
    m.dn_cfg.num_denoising = 6
    return m


def _samples(num_gts, num_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for n in num_gts:
        xy = torch.rand(n, 2, generator=g) * IMG / 2
        wh = torch.rand(n, 2, generator=g) * IMG / 3 + 4
        samples.append(
            DetDataSample(
                gt_instances=InstanceData(
                    bboxes=torch.cat([xy, xy + wh], 1),
                    labels=torch.randint(0, num_classes, (n, ),
                                         generator=g)),
                metainfo=dict(
                    img_shape=(IMG, IMG),
                    batch_input_shape=(IMG, IMG),
                    ori_shape=(IMG, IMG),
                    scale_factor=(1.0, 1.0))))
    return samples


def _train_step(model):
    """One optimiser step; returns the losses and whether the head's
    classification and corner branches changed."""
    model.train()
    head = model.bbox_head
    # the corner branches' last layer is zero-initialised: only it gets a
    # gradient in the first step
    before = [p.detach().clone() for p in (head.cls_branches[0].weight,
                                           head.reg_branches[0].layers[-1]
                                           .weight)]
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(0)
    losses = model(torch.rand(2, 3, IMG, IMG), _samples([2, 1]), mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    optim.zero_grad()
    total.backward()
    optim.step()
    after = (head.cls_branches[0].weight, head.reg_branches[0].layers[-1]
             .weight)
    changed = [not torch.equal(a, b) for a, b in zip(before, after)]
    return losses, total, changed


def test_coder_and_loss_swapped_through_config():
    """Another reg_max for the FDR coder and FocalLoss instead of VFL, only
    by config: every part follows and one training step runs."""
    m = _toy_model_cfg()
    m.bbox_head.bbox_coder = dict(
        type='FDRBBoxCoder', reg_max=16, reg_scale=4.0, up=0.5)
    m.bbox_head.loss_cls = dict(
        type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
        loss_weight=1.0)
    model = MODELS.build(m)
    head = model.bbox_head
    # the decoder decodes with the head's coder object: one source
    assert model.decoder.bbox_coder is head.bbox_coder
    assert model.decoder.reg_max == head.reg_max == 16
    assert head.reg_branches[0].layers[-1].out_features == 4 * 17
    assert model.decoder.project().shape == (17, )
    assert type(head.loss_cls).__name__ == 'FocalLoss'

    losses, total, changed = _train_step(model)
    assert torch.isfinite(total)
    assert all(changed)
    # label-only class loss: 'loss_cls' terms, no 'loss_vfl'
    assert not any(k.startswith('loss_vfl') for k in losses)
    for suffix in ('', '_aux_0', '_pre', '_enc_0', '_dn_0', '_dn_pre'):
        assert 'loss_cls' + suffix in losses, suffix
    # FDR terms with the new bin count
    assert losses['loss_fgl'] > 0 and 'loss_ddf_aux_0' in losses
    assert len(losses) == 38  # 3 decoder layers with denoising


def test_default_head_keeps_official_term_names():
    model = MODELS.build(_toy_model_cfg())
    assert model.bbox_head.reg_max == 32
    losses, total, _ = _train_step(model)
    assert torch.isfinite(total)
    assert 'loss_vfl' in losses and 'loss_cls' not in losses
    assert len(losses) == 38
    assert {k for k in losses if k.endswith('_dn_2')} == {
        'loss_vfl_dn_2', 'loss_bbox_dn_2', 'loss_giou_dn_2', 'loss_fgl_dn_2',
        'loss_ddf_dn_2'
    }


def test_shared_settings_are_filled_from_one_place():
    m = _toy_model_cfg()
    for key in ('embed_dims', 'num_pred_layer'):
        m.bbox_head.pop(key, None)
    m.neck.pop('feat_strides', None)
    model = MODELS.build(m)
    assert model.bbox_head.embed_dims == 128  # decoder.layer_cfg.embed_dims
    assert model.bbox_head.num_pred_layer == 3  # decoder.num_layers
    assert model.dn_query_generator.num_classes == 3  # bbox_head.num_classes
    assert model.neck.feat_strides == [16, 32]  # model.feat_strides


@pytest.mark.parametrize('where, value, fields', [
    ('decoder.reg_max', 16,
     ('model.decoder.reg_max', 'model.bbox_head.bbox_coder.reg_max')),
    ('decoder.reg_scale', 8.0,
     ('model.decoder.reg_scale', 'model.bbox_head.bbox_coder.reg_scale')),
    ('bbox_head.num_pred_layer', 2,
     ('model.bbox_head.num_pred_layer', 'model.decoder.num_layers')),
    ('bbox_head.embed_dims', 256,
     ('model.bbox_head.embed_dims', 'model.decoder.layer_cfg.embed_dims')),
    ('dn_cfg.num_classes', 80,
     ('model.dn_cfg.num_classes', 'model.bbox_head.num_classes')),
    ('neck.feat_strides', [8, 16],
     ('model.neck.feat_strides', 'model.feat_strides')),
])
def test_inconsistent_settings_raise_naming_both_fields(where, value, fields):
    m = _toy_model_cfg()
    part, key = where.split('.')
    m[part][key] = value
    with pytest.raises(ValueError) as err:
        MODELS.build(m)
    msg = str(err.value)
    for field in fields:
        assert field in msg, msg


def test_go_lsd_losses_reusable_by_another_head():
    """The matching + GO-LSD loss computation is usable by a head that is not
    DFINEHead (the mixin only needs what ``_init_go_lsd_losses`` builds)."""

    class OtherHead(GOLSDLossMixin, torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.num_classes = 3
            self._init_go_lsd_losses(
                bbox_coder=dict(type='FDRBBoxCoder', reg_max=4))

    torch.manual_seed(1)
    head = OtherHead()
    b, q = 1, 6
    boxes = torch.rand(b, q, 4) * 0.3 + 0.3
    last = dict(pred_logits=torch.randn(b, q, 3), pred_boxes=boxes,
                pred_corners=torch.randn(b, q, 20), ref_points=boxes)
    aux = dict(last, pred_corners=torch.randn(b, q, 20),
               teacher_corners=last['pred_corners'],
               teacher_logits=last['pred_logits'])
    outputs = dict(last, up=torch.tensor([0.5]), reg_scale=torch.tensor([4]),
                   aux_outputs=[aux])
    targets = [dict(labels=torch.tensor([1, 2]), boxes=boxes[0, :2].clone())]
    losses = head.loss_by_outputs(outputs, targets)
    assert set(losses) == {
        'loss_vfl', 'loss_bbox', 'loss_giou', 'loss_fgl', 'loss_vfl_aux_0',
        'loss_bbox_aux_0', 'loss_giou_aux_0', 'loss_fgl_aux_0',
        'loss_ddf_aux_0'
    }
    # queries 0 and 1 predict the two GT boxes exactly: L1 = 0, GIoU = 0
    assert losses['loss_bbox'].item() == pytest.approx(0.0, abs=1e-6)
    assert losses['loss_giou'].item() == pytest.approx(0.0, abs=1e-6)
    # a corner tensor that does not fit the coder is a clear error
    bad = dict(outputs, pred_corners=torch.randn(b, q, 132))
    with pytest.raises(ValueError, match='reg_max=4'):
        head.loss_by_outputs(bad, targets)
