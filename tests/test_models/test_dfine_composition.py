"""D-FINE's parts composed through the config: the head owns the FDR coder,
matching and losses (swappable), and shared settings come from one place."""
import copy
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from dfine_mmdet.models.dense_heads.go_lsd_loss import GOLSDLossMixin

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
                    labels=torch.randint(0, num_classes, (n, ), generator=g)),
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
    before = [
        p.detach().clone() for p in (head.cls_branches[0].weight,
                                     head.reg_branches[0].layers[-1].weight)
    ]
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(0)
    losses = model(torch.rand(2, 3, IMG, IMG), _samples([2, 1]), mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    optim.zero_grad()
    total.backward()
    optim.step()
    after = (head.cls_branches[0].weight,
             head.reg_branches[0].layers[-1].weight)
    changed = [not torch.equal(a, b) for a, b in zip(before, after)]
    return losses, total, changed


def test_coder_and_loss_swapped_through_config():
    """Another reg_max for the FDR coder and FocalLoss instead of VFL, only
    by config: every part follows and one training step runs."""
    m = _toy_model_cfg()
    m.bbox_head.bbox_coder = dict(
        type='FDRBBoxCoder', reg_max=16, reg_scale=4.0, up=0.5)
    m.bbox_head.loss_cls = dict(
        type='FocalLoss',
        use_sigmoid=True,
        gamma=2.0,
        alpha=0.25,
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
    assert {k
            for k in losses if k.endswith('_dn_2')} == {
                'loss_vfl_dn_2', 'loss_bbox_dn_2', 'loss_giou_dn_2',
                'loss_fgl_dn_2', 'loss_ddf_dn_2'
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
    ('bbox_head.mlp_act', 'silu',
     ('model.bbox_head.mlp_act', 'model.decoder.mlp_act')),
    ('bbox_head.activation', 'silu',
     ('model.bbox_head.activation', 'model.decoder.activation')),
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
    """The supervision plan and loss loop serve a head that is not
    DFINEHead: it builds its coder, matcher and class / box losses, calls
    ``_init_go_lsd_losses`` and hands its per-layer outputs to
    ``go_lsd_loss``."""
    from mmdet.registry import TASK_UTILS

    from dfine_mmdet.models.dense_heads.supervision_plan import FDRPredictions

    class OtherHead(GOLSDLossMixin, torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.num_classes = 3
            self.bbox_coder = TASK_UTILS.build(
                dict(type='FDRBBoxCoder', reg_max=4))
            self.assigner = TASK_UTILS.build(
                dict(type='DFINEHungarianAssigner'))
            self.loss_cls = MODELS.build(
                dict(type='FocalLoss', use_sigmoid=True))
            self.loss_bbox = MODELS.build(dict(type='L1Loss'))
            self.loss_iou = MODELS.build(dict(type='GIoULoss'))
            self._init_go_lsd_losses(
                dict(type='GOLSDAssigner'),
                dict(type='FineGrainedLocalizationLoss'),
                dict(type='DecoupledDistillationFocalLoss'))

    torch.manual_seed(1)
    head = OtherHead()
    b, q = 1, 6
    boxes = torch.rand(b, q, 4) * 0.3 + 0.3
    layers = FDRPredictions(
        torch.randn(2, b, q, 3), boxes[None].expand(2, -1, -1, -1),
        torch.randn(2, b, q, 20), boxes)
    targets = [dict(labels=torch.tensor([1, 2]), boxes=boxes[0, :2].clone())]
    losses = head.go_lsd_loss(layers, targets)
    assert set(losses) == {
        'loss_cls', 'loss_bbox', 'loss_giou', 'loss_fgl', 'loss_cls_aux_0',
        'loss_bbox_aux_0', 'loss_giou_aux_0', 'loss_fgl_aux_0',
        'loss_ddf_aux_0'
    }
    # queries 0 and 1 predict the two GT boxes exactly: L1 = 0, GIoU = 0
    assert losses['loss_bbox'].item() == pytest.approx(0.0, abs=1e-6)
    assert losses['loss_giou'].item() == pytest.approx(0.0, abs=1e-6)
    # a corner tensor that does not fit the coder is a clear error
    bad = layers._replace(corners=torch.randn(2, b, q, 132))
    with pytest.raises(ValueError, match='reg_max=4'):
        head.go_lsd_loss(bad, targets)


def test_class_loss_key_comes_from_the_loss():
    """The class term is keyed by the loss module: ``loss_name`` when it
    states one, else by type (VFL -> loss_vfl, DEIM's MAL -> loss_mal), else
    loss_cls; an ``iou_aware`` loss gets the matched IoUs."""
    from dfine_mmdet.models.losses import classification_loss, loss_key

    class ScoreLoss(torch.nn.Module):
        loss_name = 'loss_score'
        iou_aware = True

        def forward(self, logits, target, avg_factor):
            labels, ious = target
            return (ious.sum() + 0 * logits.sum()) / avg_factor

    class MatchabilityAwareLoss(torch.nn.Module):  # type name only
        pass

    vfl = MODELS.build(dict(type='DFINEVarifocalLoss'))
    focal = MODELS.build(dict(type='FocalLoss', use_sigmoid=True))
    assert loss_key(vfl) == 'loss_vfl' and loss_key(focal) == 'loss_cls'
    assert loss_key(MatchabilityAwareLoss()) == 'loss_mal'
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]]])
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.4]])  # IoU 0.5 with query 0
    key, value = classification_loss(
        ScoreLoss(),
        torch.zeros(1, 2, 3),
        boxes, [dict(labels=torch.tensor([1]), boxes=gt)],
        [(torch.tensor([0]), torch.tensor([0]))],
        avg_factor=2.0)
    assert key == 'loss_score'
    assert value.item() == pytest.approx(0.25, rel=1e-6)


def test_quality_focal_loss_gets_flat_iou_targets():
    """mmdet's QualityFocalLoss (IoU-aware) is called as mmdet's DETR heads
    call it: flat logits and ``(labels, IoU)`` targets, background = C."""
    from mmdet.models.losses.gfocal_loss import quality_focal_loss
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps

    from dfine_mmdet.models.losses import classification_loss
    from dfine_mmdet.models.losses.set_prediction_losses import is_iou_aware
    qfl = MODELS.build(
        dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0))
    assert is_iou_aware(qfl)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, generator=g)
    boxes = torch.rand(2, 4, 4, generator=g) * 0.3 + 0.3
    gts = [torch.rand(2, 4, generator=g) * 0.3 + 0.3, torch.rand(1, 4)]
    targets = [
        dict(labels=torch.tensor([2, 0]), boxes=gts[0]),
        dict(labels=torch.tensor([1]), boxes=gts[1] * 0.3 + 0.3)
    ]
    indices = [(torch.tensor([3, 1]), torch.tensor([0, 1])),
               (torch.tensor([2]), torch.tensor([0]))]
    key, value = classification_loss(qfl, logits, boxes, targets, indices, 3.0)
    # expected, built independently: per-query label and IoU score
    labels = torch.full((2, 4), 3)
    scores = torch.zeros(2, 4)
    for b, (q, t) in enumerate(indices):
        labels[b, q] = targets[b]['labels'][t]
        scores[b, q] = bbox_overlaps(
            bbox_cxcywh_to_xyxy(boxes[b, q]),
            bbox_cxcywh_to_xyxy(targets[b]['boxes'][t]),
            is_aligned=True)
    assert (scores > 0).sum() == 3
    expected = quality_focal_loss(
        logits.reshape(-1, 3), (labels.reshape(-1), scores.reshape(-1)),
        beta=2.0,
        reduction='none').sum() / 3.0
    assert key == 'loss_cls'
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)


def test_activation_fields_reach_every_mlp():
    """decoder.activation / decoder.mlp_act (DEIM's fields) select the
    layer FFN + LQE and the query-pos / box / corner MLP activations."""
    m = _toy_model_cfg()
    m.decoder.activation = 'silu'
    m.decoder.mlp_act = 'gelu'
    model = MODELS.build(m)
    head, dec = model.bbox_head, model.decoder
    assert all(
        isinstance(layer.activation, torch.nn.SiLU) for layer in dec.layers)
    assert all(
        isinstance(lqe.reg_conf.act, torch.nn.SiLU) for lqe in head.lqe_layers)
    mlps = [dec.query_pos_head, head.pre_reg_branch, head.enc_reg_branch
            ] + list(head.reg_branches)
    assert all(isinstance(mlp.act, torch.nn.GELU) for mlp in mlps)
    losses, total, _ = _train_step(model)
    assert torch.isfinite(total) and len(losses) == 38
    m.decoder.mlp_act = 'tanhh'
    with pytest.raises(ValueError, match='tanhh'):
        MODELS.build(m)


def test_default_activations_are_relu():
    model = MODELS.build(_toy_model_cfg())
    head, dec = model.bbox_head, model.decoder
    mlps = [
        dec.query_pos_head, head.pre_reg_branch, head.enc_reg_branch
    ] + list(head.reg_branches) + [lqe.reg_conf for lqe in head.lqe_layers]
    assert all(isinstance(mlp.act, torch.nn.ReLU) for mlp in mlps)
    assert all(
        isinstance(layer.activation, torch.nn.ReLU) for layer in dec.layers)


def test_level_count_and_channels_are_derived():
    """decoder.layer_cfg.num_levels follows len(feat_strides) and
    in_channels the neck's out_channels when a config leaves them out."""
    m = _toy_model_cfg()
    m.decoder.layer_cfg.pop('num_levels', None)
    m.pop('in_channels', None)
    model = MODELS.build(m)
    assert model.in_channels == model.neck.out_channels == [128, 128]
    assert len(model.decoder.layers[0].cross_attn.num_points_list) == 2
    m.in_channels = [128, 64]
    with pytest.raises(
            ValueError, match=r'model\.in_channels.*'
            r'model\.neck\.out_channels'):
        MODELS.build(m)
