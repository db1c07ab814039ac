"""FDR + GO-LSD inside mmdet's DINO (configs/dino_fdr/).

Tiny variants of the toy configs (ResNet-18 at 1/8 width, 32-d, 1 encoder /
3 decoder layers, 10 queries, the session toy set) are

* trained 60 AdamW steps on one fixed batch: every FDR term (FGL on every
  layer and denoising layer, DDF on the non-final ones) present and finite,
  total loss and the last layer's L1 box loss decreasing (mean of the last 5
  steps < 0.85x / 0.8x the first 5; FGL itself grows at first, being
  weighted by the IoU of the still poor boxes);
* run through ``predict`` (DINOHead's path): boxes inside the original image;
* trained with D-FINE's VFL as classification loss instead (``loss_vfl``);
* loaded from a plain mmdet DINO state dict through MMEngine's non-strict
  ``load_checkpoint``: the reported mismatches are exactly the last Linear of
  the decoder's reg branches, nothing missing / unexpected, every other
  tensor equal bit for bit;
* checked in the decoder: layer k's corner logits are layer k-1's plus its
  branch's residual (a zeroed branch repeats the previous box), and every box
  is the coder's decode around the initial reference;
* with ``pre_refine`` (D-FINE's layer-0 pre head): the fixed reference is the
  detached pre box ``sigmoid(delta(h_0) + logit(proposal))`` (the proposal
  itself with a zero pre head), the ``_pre`` / ``_dn_pre`` terms are present
  and finite and the training test passes with it, the pre head is built
  without shifting any other parameter's initialisation, and a plain DINO
  checkpoint initialises it from ``reg_branches.0`` (same key report).

Also: the COCO config builds with the FDR parts, the toy FDR config differs
from the plain toy config only by the FDR deltas and resolves to the COCO
config's head / matcher settings, the README benchmark command runs, and
misconfigurations raise errors naming the field.
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
CFG_DIR = osp.join(ROOT, 'configs', 'dino_fdr')
COCO_CFG = osp.join(CFG_DIR, 'dino-4scale_r50_fdr_8xb2-12e_coco.py')
PLAIN_TOY = osp.join(CFG_DIR, 'toy', 'dino-4scale_r18_toy.py')
FDR_TOY = osp.join(CFG_DIR, 'toy', 'dino-4scale_r18_fdr_toy.py')
FDR_PRE_TOY = osp.join(CFG_DIR, 'toy', 'dino-4scale_r18_fdr_pre_toy.py')

NUM_LAYERS = 3
D = 32
TINY = {
    'model.num_queries': 10,
    'model.backbone.base_channels': 8,
    'model.neck.in_channels': [16, 32, 64],
    'model.neck.out_channels': D,
    'model.neck.norm_cfg.num_groups': 8,
    'model.encoder.num_layers': 1,
    'model.encoder.layer_cfg.self_attn_cfg.embed_dims': D,
    'model.encoder.layer_cfg.self_attn_cfg.num_heads': 4,
    'model.encoder.layer_cfg.ffn_cfg.embed_dims': D,
    'model.encoder.layer_cfg.ffn_cfg.feedforward_channels': 64,
    'model.decoder.num_layers': NUM_LAYERS,
    'model.decoder.layer_cfg.self_attn_cfg.embed_dims': D,
    'model.decoder.layer_cfg.self_attn_cfg.num_heads': 4,
    'model.decoder.layer_cfg.cross_attn_cfg.embed_dims': D,
    'model.decoder.layer_cfg.cross_attn_cfg.num_heads': 4,
    'model.decoder.layer_cfg.ffn_cfg.embed_dims': D,
    'model.decoder.layer_cfg.ffn_cfg.feedforward_channels': 64,
    'model.positional_encoding.num_feats': D // 2,
    'model.bbox_head.embed_dims': D,
    'model.dn_cfg.group_cfg.num_dn_queries': 10,
    'model.test_cfg.max_per_img': 10,
    'train_dataloader.batch_size': 2,
    'val_dataloader.batch_size': 4,
}


@pytest.fixture(scope='module')
def fdr_cfg(toy_coco):
    return small_toy_cfg(FDR_TOY, toy_coco, TINY)


@pytest.fixture(scope='module')
def plain_cfg(toy_coco):
    return small_toy_cfg(PLAIN_TOY, toy_coco, TINY)


def _fdr_terms(num_layers):
    """Names of the FDR loss terms for ``num_layers`` decoder layers with
    denoising (see go_lsd_loss.py's table)."""
    names = {'loss_fgl'}
    for i in range(num_layers - 1):
        names |= {f'loss_fgl_aux_{i}', f'loss_ddf_aux_{i}'}
    for i in range(num_layers):
        names |= {f'loss_fgl_dn_{i}', f'loss_ddf_dn_{i}'}
    return names


PRE_TERMS = {
    f'loss_{t}_{s}'
    for t in ('cls', 'bbox', 'giou')
    for s in ('pre', 'dn_pre')
}


def _with_pre(cfg, pre_refine):
    cfg = copy.deepcopy(cfg)
    cfg.model.bbox_head.pre_refine = pre_refine
    return cfg


@pytest.mark.parametrize(
    'pre_refine', [False, True], ids=['proposal_ref', 'pre_refine'])
def test_train_fixed_batch_loss_decreases(fdr_cfg, pre_refine):
    from mmengine.optim import OptimWrapper

    from dfine_mmdet.models.layers import FDRDinoTransformerDecoder
    cfg = _with_pre(fdr_cfg, pre_refine)
    # DINO's FocalLoss here: this checks the FDR regression path on a fixed
    # batch, and the total of a focal class loss falls monotonically there,
    # while VFL's targets (the IoUs) rise as the boxes improve
    cfg.model.bbox_head.loss_cls = focal_loss_cfg(1.0)
    model = build_detector(cfg)
    assert type(model).__name__ == 'DINOFDR'
    assert isinstance(model.decoder, FDRDinoTransformerDecoder)
    assert (model.bbox_head.pre_reg_branch is not None) == pre_refine
    batch = first_batch(cfg.train_dataloader)
    optim = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4),
        clip_grad=dict(max_norm=0.1))
    model.train()
    torch.manual_seed(0)  # denoising noise
    totals, l1, pre_l1 = [], [], []
    expected = _fdr_terms(NUM_LAYERS) | (PRE_TERMS if pre_refine else set())
    for _ in range(60):
        losses = model.train_step(batch, optim)
        missing = expected - set(losses)
        assert not missing, (sorted(missing), sorted(losses))
        # D-FINE's pre output: box terms only (no corners, so no FGL / DDF)
        assert {k
                for k in losses if k.endswith('pre')
                } == (PRE_TERMS if pre_refine else set()), sorted(losses)
        bad = {
            k: float(v)
            for k, v in losses.items() if not math.isfinite(float(v.detach()))
        }
        assert not bad, bad
        totals.append(float(losses['loss']))
        l1.append(float(losses['loss_bbox']))
        if pre_refine:
            pre_l1.append(float(losses['loss_bbox_pre']))
    first, last = sum(totals[:5]) / 5, sum(totals[-5:]) / 5
    print(f'total loss {first:.3f} -> {last:.3f}; L1 {l1[0]:.3f} -> '
          f'{l1[-1]:.3f}')
    assert last < 0.85 * first, totals
    assert sum(l1[-5:]) / 5 < 0.8 * sum(l1[:5]) / 5, l1
    if pre_refine:  # the pre head is trained
        assert sum(pre_l1[-5:]) / 5 < 0.8 * sum(pre_l1[:5]) / 5, pre_l1
    # the layers have diverged, so distillation is active
    assert float(losses['loss_ddf_aux_0']) > 0, losses


def test_classification_loss_vfl_by_config_focal_on_request(fdr_cfg):
    """The FDR configs' class loss is D-FINE's DFINEVarifocalLoss (terms
    ``loss_vfl*`` on every output; docs/fdr_in_detrs.md says why); DINO's
    FocalLoss still works when a config asks for it (``loss_cls*``)."""
    check_class_loss_terms(
        fdr_cfg, ('', '_aux_0', '_aux_1', '_enc_0', '_dn_0', '_dn_1', '_dn_2'),
        focal_weight=1.0)


def test_predict_boxes_inside_image(fdr_cfg):
    from mmdet.evaluation import CocoMetric
    from mmengine.runner import Runner
    model = build_detector(fdr_cfg)
    # non-zero corner branches so that boxes move off the references
    with torch.no_grad():
        for branch in model.bbox_head.reg_branches:
            branch[-1].weight.normal_(0, 0.5)
    model.eval()
    loader = Runner.build_dataloader(fdr_cfg.val_dataloader, seed=0)
    metric = CocoMetric(ann_file=fdr_cfg.val_evaluator.ann_file, metric='bbox')
    metric.dataset_meta = loader.dataset.metainfo
    num = 0
    with torch.no_grad():
        for data in loader:
            outputs = model.val_step(data)
            for out in outputs:
                h, w = out.ori_shape
                pred = out.pred_instances
                assert len(pred.bboxes) == 10
                b = pred.bboxes
                assert (b[:, 0::2] >= 0).all() and (b[:, 0::2] <= w).all()
                assert (b[:, 1::2] >= 0).all() and (b[:, 1::2] <= h).all()
                assert (b[:, 2:] >= b[:, :2]).all()
                assert (pred.scores.diff() <= 0).all()
            metric.process(data, [o.to_dict() for o in outputs])
            num += len(outputs)
    results = metric.evaluate(num)
    assert 0.0 <= results['coco/bbox_mAP'] <= 1.0, results


@pytest.mark.parametrize(
    'pre_refine', [False, True], ids=['proposal_ref', 'pre_refine'])
def test_tensor_mode_returns_logits_and_fdr_boxes(fdr_cfg, pre_refine):
    """``mode='tensor'`` (mmdet's ``_forward``, used by tracing and
    get_flops) passes every decoder output to the head; it returns the
    per-layer logits and the decoder's FDR boxes, equal to ``predict``'s
    inputs."""
    cfg = _with_pre(fdr_cfg, pre_refine)
    model = build_detector(cfg).eval()
    data = model.data_preprocessor(first_batch(cfg.val_dataloader), False)
    with torch.no_grad():
        logits, boxes = model(
            data['inputs'], data['data_samples'], mode='tensor')
        feats = model.extract_feat(data['inputs'])
        dec = model.forward_transformer(feats, data['data_samples'])
    num_layers = cfg.model.decoder.num_layers
    batch = data['inputs'].shape[0]
    num_queries = cfg.model.num_queries
    assert logits.shape == (num_layers, batch, num_queries,
                            cfg.model.bbox_head.num_classes)
    assert boxes.shape == (num_layers, batch, num_queries, 4)
    torch.testing.assert_close(boxes, torch.stack(dec['references'][1:]))


class _Records(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _load_report(model, path):
    """MMEngine's non-strict ``load_checkpoint`` report: (mismatched,
    missing, unexpected) key sets parsed from its log."""
    from mmengine.runner import load_checkpoint
    logger = logging.getLogger('test_dino_fdr_load')
    handler = _Records()
    logger.addHandler(handler)
    try:
        load_checkpoint(
            model, path, map_location='cpu', strict=False, logger=logger)
    finally:
        logger.removeHandler(handler)
    report = '\n'.join(handler.messages)
    mismatched = set(re.findall(r'size mismatch for (\S+?):', report))
    missing = set()
    for line in re.findall(r'missing keys in source state_dict: (.*)', report):
        missing |= set(line.split(', '))
    unexpected = re.findall(r'unexpected key in source state_dict: (.*)',
                            report)
    return mismatched, missing, unexpected, report


@pytest.mark.parametrize(
    'pre_refine', [False, True], ids=['proposal_ref', 'pre_refine'])
def test_load_plain_dino_checkpoint(plain_cfg, fdr_cfg, tmp_path, pre_refine):
    """A plain mmdet DINO checkpoint (noised, so no tensor equals an init)
    loads into DINOFDR through MMEngine's non-strict loading.  With
    ``pre_refine`` the pre head (which has no key in a DINO checkpoint) is
    initialised from DINO's layer-0 delta branch ``reg_branches.0`` (the
    same function: DINO's layer-0 box), so the report is the same: the key
    sets below hold for both variants."""
    plain = build_detector(plain_cfg, seed=1)
    assert type(plain).__name__ == 'DINO'
    gen = torch.Generator().manual_seed(0)
    sd = {
        k: (v + 0.01 * torch.randn(v.shape, generator=gen)
            if v.is_floating_point() else v.clone())
        for k, v in plain.state_dict().items()
    }
    path = str(tmp_path / 'dino_plain.pth')
    torch.save({'state_dict': sd}, path)

    model = build_detector(_with_pre(fdr_cfg, pre_refine), seed=0)
    mismatched, missing, unexpected, report = _load_report(model, path)
    expected = {
        f'bbox_head.reg_branches.{i}.4.{p}'
        for i in range(NUM_LAYERS)
        for p in ('weight', 'bias')
    }
    assert mismatched == expected, report
    assert not missing and not unexpected, report

    own = model.state_dict()
    pre_keys = {k for k in own if k.startswith('bbox_head.pre_reg_branch.')}
    assert bool(pre_keys) == pre_refine
    assert set(own) - pre_keys == set(sd)
    src = 'bbox_head.reg_branches.0.'
    for k in pre_keys:  # DINO's layer-0 delta branch, bit for bit
        assert torch.equal(own[k], sd[src + k[len('bbox_head.pre_reg_'
                                                  'branch.'):]]), k
    for k in expected:
        assert own[k].shape[0] == 4 * (model.bbox_head.reg_max + 1)
        assert sd[k].shape[0] == 4
        assert not own[k].any(), k  # left at its init: the reference box
    shared = [k for k in sd if k not in expected]
    for prefix in ('backbone.', 'neck.', 'encoder.', 'decoder.layers.',
                   'decoder.ref_point_head.', 'bbox_head.cls_branches.',
                   f'bbox_head.reg_branches.{NUM_LAYERS}.',
                   'dn_query_generator.', 'query_embedding.'):
        assert any(k.startswith(prefix) for k in shared), prefix
    differ = [k for k in shared if not torch.equal(own[k], sd[k])]
    assert not differ, differ

    if pre_refine:
        # a DINOFDR checkpoint without pre head (132-output reg_branches.0)
        # does not feed the pre head: reported missing, left at its init
        fdr = build_detector(fdr_cfg, seed=2)
        path = str(tmp_path / 'dino_fdr.pth')
        torch.save({'state_dict': fdr.state_dict()}, path)
        model = build_detector(_with_pre(fdr_cfg, True), seed=0)
        init = {
            k: v.clone()
            for k, v in model.state_dict().items() if k in pre_keys
        }
        mismatched, missing, unexpected, report = _load_report(model, path)
        assert not mismatched and not unexpected, report
        assert missing == pre_keys, report
        own = model.state_dict()
        assert all(torch.equal(own[k], init[k]) for k in pre_keys)


def _transformer_outputs(model, cfg):
    batch = first_batch(cfg.val_dataloader)
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        return model.forward_transformer(feats, data['data_samples'])


def test_decoder_refines_previous_distribution(fdr_cfg):
    model = build_detector(fdr_cfg)
    model.eval()
    branches = model.bbox_head.reg_branches
    coder = model.bbox_head.bbox_coder

    # zero-initialised branches: uniform edge distributions = the reference
    out = _transformer_outputs(model, fdr_cfg)
    refs = out['references']
    assert len(refs) == NUM_LAYERS + 1
    for k in range(1, NUM_LAYERS + 1):
        torch.testing.assert_close(refs[k], refs[0], rtol=0, atol=1e-6)

    with torch.no_grad():
        for branch in branches[:NUM_LAYERS]:
            branch[-1].weight.normal_(0, 0.5)
            branch[-1].bias.normal_(0, 0.5)
        branches[1][-1].weight.zero_()
        branches[1][-1].bias.zero_()
    out = _transformer_outputs(model, fdr_cfg)
    refs, corners = out['references'], out['pred_corners']
    assert corners.shape[-1] == 4 * (coder.reg_max + 1)
    # layer 1 adds nothing to layer 0's distributions
    assert torch.equal(corners[1], corners[0])
    assert torch.equal(refs[2], refs[1])
    # the other layers do refine
    assert not torch.allclose(refs[1], refs[0])
    assert not torch.allclose(refs[3], refs[2])
    # every box is decoded around the fixed initial reference
    for k in range(NUM_LAYERS):
        torch.testing.assert_close(
            refs[k + 1], coder.decode(refs[0], corners[k]), rtol=0, atol=0)


def _decoder_run(model, cfg):
    """``DINOFDR``'s pre-decoder inputs (eval mode: the two-stage top-k
    proposals as ``reference_points``) and ``forward_decoder``'s output."""
    batch = first_batch(cfg.val_dataloader)
    data = model.data_preprocessor(batch, False)
    samples = data['data_samples']
    feats = model.extract_feat(data['inputs'])
    enc_in, dec_in = model.pre_transformer(feats, samples)
    enc_out = model.forward_encoder(**enc_in)
    tmp_dec_in, _ = model.pre_decoder(**enc_out, batch_data_samples=samples)
    dec_in.update(tmp_dec_in)
    return dec_in, model.forward_decoder(**dec_in)


def test_pre_refine_reference_is_pre_box(fdr_cfg):
    """``pre_refine``: the fixed FDR reference of every layer is the pre box
    ``sigmoid(delta(h_0) + logit(proposal))`` (detached); a zero pre head
    leaves it equal to the proposal."""
    model = build_detector(_with_pre(fdr_cfg, True))
    # the pre head is built under a forked RNG: every other parameter is
    # initialised as without it (the variants compare from equal weights)
    ref_sd = build_detector(fdr_cfg).state_dict()
    own_sd = model.state_dict()
    assert set(own_sd) - set(ref_sd) == {
        k
        for k in own_sd if k.startswith('bbox_head.pre_reg_branch.')
    }
    assert all(torch.equal(own_sd[k], v) for k, v in ref_sd.items())
    model.eval()
    head = model.bbox_head
    coder = head.bbox_coder
    with torch.no_grad():
        dec_in, out = _decoder_run(model, fdr_cfg)
    proposal = dec_in['reference_points']
    refs = out['references']
    # zero-initialised pre head and branches: everything is the proposal
    torch.testing.assert_close(out['pre_boxes'], proposal, rtol=0, atol=1e-6)
    for k in range(NUM_LAYERS + 1):
        torch.testing.assert_close(refs[k], proposal, rtol=0, atol=1e-6)

    with torch.no_grad():
        for branch in list(
                head.reg_branches[:NUM_LAYERS]) + [head.pre_reg_branch]:
            branch[-1].weight.normal_(0, 0.5)
            branch[-1].bias.normal_(0, 0.5)
    dec_in, out = _decoder_run(model, fdr_cfg)  # with autograd
    proposal = dec_in['reference_points']
    refs, corners, pre = out['references'], out['pred_corners'], \
        out['pre_boxes']
    assert pre.requires_grad
    p = proposal.double()
    delta = head.pre_reg_branch(out['hidden_states'][0]).double()
    expected = torch.sigmoid(delta + torch.log(p / (1 - p)))
    torch.testing.assert_close(refs[0].double(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(refs[0], pre.detach(), rtol=0, atol=0)
    assert (refs[0] - proposal).abs().max() > 1e-2
    # every layer decodes around the pre box, not the proposal
    for k in range(NUM_LAYERS):
        torch.testing.assert_close(
            refs[k + 1].detach(),
            coder.decode(refs[0], corners[k].detach()),
            rtol=0,
            atol=0)
    # the reference is detached (no gradient from the boxes of any layer to
    # the pre head); the pre head is trained through pre_boxes only
    (torch.stack(refs).sum() + corners.sum()).backward(retain_graph=True)
    assert head.pre_reg_branch[-1].weight.grad is None
    assert head.reg_branches[0][-1].weight.grad.abs().sum() > 0
    pre.sum().backward()
    assert head.pre_reg_branch[-1].weight.grad.abs().sum() > 0


def _unscoped(obj):
    if isinstance(obj, dict):
        return {k: _unscoped(v) for k, v in obj.items() if k != '_scope_'}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unscoped(v) for v in obj)
    return obj


def test_coco_config_builds_with_fdr_parts():
    from dfine_mmdet.models.layers import FDRDinoTransformerDecoder
    cfg = Config.fromfile(COCO_CFG)
    import mmdet
    base = Config.fromfile(
        osp.join(
            osp.dirname(mmdet.__file__), '.mim', 'configs', 'dino',
            'dino-4scale_r50_8xb2-12e_coco.py'))
    # only the FDR deltas differ from mmdet's DINO config (inheriting through
    # 'mmdet::' adds `_scope_` keys)
    ours, theirs = _unscoped(cfg.to_dict()), _unscoped(base.to_dict())
    assert ours.pop('custom_imports')['imports'] == ['dfine_mmdet']
    om, tm = ours.pop('model'), theirs.pop('model')
    assert ours == theirs
    assert (om.pop('type'), tm.pop('type')) == ('DINOFDR', 'DINO')
    oh, th = om.pop('bbox_head'), tm.pop('bbox_head')
    assert (oh.pop('type'), th.pop('type')) == ('DINOFDRHead', 'DINOHead')
    assert set(oh) - set(th) == {
        'bbox_coder', 'go_lsd_assigner', 'loss_fgl', 'loss_ddf'
    }
    # class loss: D-FINE's IoU-aware VFL instead of DINO's FocalLoss
    assert th.pop('loss_cls')['type'] == 'FocalLoss'
    assert oh.pop('loss_cls') == dict(
        type='DFINEVarifocalLoss', alpha=0.75, gamma=2.0, loss_weight=1.0)
    assert {k: oh[k] for k in th} == th
    assert om.pop('train_cfg')['assigner']['type'] == 'DFINEHungarianAssigner'
    tm.pop('train_cfg')
    assert om == tm
    # built without init_weights (that would load torchvision://resnet50)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    model = MODELS.build(cfg.model)
    head = model.bbox_head
    assert type(model).__name__ == 'DINOFDR'
    assert type(head).__name__ == 'DINOFDRHead'
    assert isinstance(model.decoder, FDRDinoTransformerDecoder)
    assert [b[-1].out_features for b in head.reg_branches] == [132] * 6 + [4]
    assert type(head.assigner).__name__ == 'DFINEHungarianAssigner'


def _head_settings(head):
    a, c = head.assigner, head.bbox_coder
    return dict(
        coder=(c.reg_max, c.reg_scale, c.up),
        assigner=(type(a).__name__, a.cost_class, a.cost_bbox, a.cost_giou,
                  a.alpha, a.gamma),
        go_lsd=type(head.go_lsd_assigner).__name__,
        cls=(type(head.loss_cls).__name__, head.loss_cls.alpha,
             head.loss_cls.gamma, head.loss_cls.loss_weight),
        bbox=(type(head.loss_bbox).__name__, head.loss_bbox.loss_weight),
        iou=(type(head.loss_iou).__name__, head.loss_iou.loss_weight),
        fgl=head.loss_fgl.loss_weight,
        ddf=(head.loss_ddf.loss_weight, head.loss_ddf.temperature))


def test_toy_configs_differ_only_by_fdr_deltas():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import dfine_mmdet  # noqa: F401
    register_all_modules(init_default_scope=True)
    plain = Config.fromfile(PLAIN_TOY).to_dict()
    fdr = Config.fromfile(FDR_TOY).to_dict()
    assert fdr.pop('custom_imports')['imports'] == ['dfine_mmdet']
    pm, fm = plain.pop('model'), fdr.pop('model')
    assert plain == fdr
    assert (pm.pop('type'), fm.pop('type')) == ('DINO', 'DINOFDR')
    assert fm.pop('train_cfg') == dict(
        assigner=dict(type='DFINEHungarianAssigner'))
    pm.pop('train_cfg')
    ph, fh = pm.pop('bbox_head'), fm.pop('bbox_head')
    assert (ph.pop('type'), fh.pop('type')) == ('DINOHead', 'DINOFDRHead')
    # class loss: D-FINE's IoU-aware VFL instead of DINO's FocalLoss
    assert ph.pop('loss_cls')['type'] == 'FocalLoss'
    assert fh.pop('loss_cls') == dict(
        type='DFINEVarifocalLoss', alpha=0.75, gamma=2.0, loss_weight=1.0)
    assert ph == fh
    assert pm == fm
    # same head / matcher settings as the COCO config
    coco = Config.fromfile(COCO_CFG)
    toy = Config.fromfile(FDR_TOY)
    heads = []
    for cfg in (coco, toy):
        head_cfg = dict(
            cfg.model.bbox_head,
            num_classes=3,
            embed_dims=32,
            train_cfg=cfg.model.train_cfg)
        heads.append(MODELS.build(head_cfg))
    assert _head_settings(heads[0]) == _head_settings(heads[1])
    # the benchmark's third model only adds the pre head
    pre = Config.fromfile(FDR_PRE_TOY).to_dict()
    fdr = Config.fromfile(FDR_TOY).to_dict()
    assert pre['model']['bbox_head'].pop('pre_refine') is True
    assert fdr['model']['bbox_head'].pop('pre_refine', False) is False
    assert pre == fdr


def _toy_tool():
    """``tools/experiments/dino_fdr_toy.py`` as a module, and ``TINY`` as its
    ``--cfg-options`` arguments."""
    import sys
    sys.path.insert(0, osp.join(ROOT, 'tools', 'experiments'))
    try:
        import dino_fdr_toy
    finally:
        sys.path.pop(0)
    return dino_fdr_toy, [f'{k}={v}'.replace(' ', '') for k, v in TINY.items()]


def test_benchmark_command_runs(toy_coco, tmp_path, capsys):
    """README: ``python tools/experiments/dino_fdr_toy.py --iters 300 --seeds
    0 1`` (here 2 iterations, one seed, tiny size), plus one ablation (a
    built-in model with a config override) and the JSON output."""
    import json
    tool, opts = _toy_tool()
    main = tool.main
    out_json = str(tmp_path / 'results.json')
    means = main([
        '--iters', '2', '--seeds', '0', '--data', toy_coco, '--val-every', '2',
        '--jobs', '1', '--work-dir',
        str(tmp_path), '--json', out_json, '--models', 'DINO', 'DINO+FDR',
        'DINO+FDR+pre', '--ablation', 'up1', 'base=DINO+FDR',
        'model.bbox_head.bbox_coder.type=FDRBBoxCoder',
        'model.bbox_head.bbox_coder.up=1.0', '--cfg-options'
    ] + opts)
    assert list(means) == ['DINO', 'DINO+FDR', 'DINO+FDR+pre', 'up1']
    for m in means.values():
        assert 0.0 <= m['mAP75'] <= 1.0 and m['s_per_iter'] > 0
    lines = capsys.readouterr().out.strip().splitlines()
    ratios = [ln for ln in lines if ln.startswith('ratio ')]
    assert [ln.split(':')[0] for ln in ratios] == [
        'ratio DINO+FDR/DINO', 'ratio DINO+FDR+pre/DINO', 'ratio up1/DINO'
    ]
    assert all(' AP75 ' in ln for ln in ratios)
    assert any(ln.startswith('DN positives') for ln in lines), lines
    with open(out_json) as f:
        saved = json.load(f)
    run = saved['runs']['up1']['0']
    assert run['curve'][-1][0] == 2
    assert set(
        run['offsets']) >= {'proposal', 'layer0', 'final_iou', 'dn_positive'}
    # the ablation is recorded with its overrides
    assert saved['args']['ablation'][0][-1] == \
        'model.bbox_head.bbox_coder.up=1.0'


def test_benchmark_resume_continues_the_runs(toy_coco, tmp_path, capsys):
    """``dino_fdr_toy.py --resume``: a 2-iteration run continued to 4 starts
    from its checkpoint (iteration 2), keeps the earlier curve point from
    the --json file, evaluates at 4 and leaves a checkpoint at 4; a budget
    that the checkpoint already reached is refused by name."""
    import json
    tool, opts = _toy_tool()
    main = tool.main
    out_json = str(tmp_path / 'results.json')
    common = [
        '--seeds', '0', '--data', toy_coco, '--val-every', '2', '--jobs', '1',
        '--work-dir',
        str(tmp_path), '--json', out_json, '--models', 'DINO+FDR',
        '--cfg-options'
    ] + opts
    main(['--iters', '2'] + common)
    with open(out_json) as f:
        first = json.load(f)['runs']['DINO+FDR']['0']
    assert first['start_iter'] == 0 and [p[0] for p in first['curve']] == [2]
    capsys.readouterr()
    main(['--iters', '4', '--resume'] + common)
    out = capsys.readouterr().out
    assert 'continued from iteration 2' in out, out
    with open(out_json) as f:
        second = json.load(f)['runs']['DINO+FDR']['0']
    assert second['start_iter'] == 2
    assert [p[0] for p in second['curve']] == [2, 4]
    assert second['curve'][0] == first['curve'][0]
    run_dir = tmp_path / 'DINO_FDR_s0'
    with open(run_dir / 'last_checkpoint') as f:
        assert f.read().strip().endswith('iter_4.pth')
    with pytest.raises(ValueError, match='iter_4.pth is at iteration 4'):
        main(['--iters', '4', '--resume'] + common)
    with pytest.raises(ValueError, match='--work-dir'):
        main(['--iters', '4', '--resume', '--models', 'DINO'])


def test_benchmark_edge_offsets_invert_the_coder():
    """The offset statistics use Eq. 2 inverted: decoding the offsets
    ``edge_offsets`` returns around the reference gives the GT box back."""
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy

    from dfine_mmdet.models.task_modules.coders.fdr_coder import distance2bbox
    tool, _ = _toy_tool()
    edge_offsets, offset_stats = tool.edge_offsets, tool.offset_stats
    reach_ceiling = tool.reach_ceiling
    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(50, 4, generator=gen) * 0.4 + 0.1
    gt = bbox_cxcywh_to_xyxy(torch.rand(50, 4, generator=gen) * 0.4 + 0.1)
    for c in (4.0, 8.0):
        d = edge_offsets(ref, gt, c)
        back = bbox_cxcywh_to_xyxy(distance2bbox(ref, d, c))
        torch.testing.assert_close(back, gt, atol=1e-5, rtol=0)
    # reach: an edge moves at most 2a reference widths; a GT 5x as wide as
    # its (centred) reference can be covered to 3x: IoU 3/5; one inside
    # the reach exactly
    ref = torch.tensor([[0.5, 0.5, 0.1, 0.2], [0.5, 0.5, 0.1, 0.2]])
    gt = torch.tensor([[0.25, 0.4, 0.75, 0.6], [0.46, 0.42, 0.56, 0.6]])
    ceiling = reach_ceiling(ref, gt, 4.0, 0.5)
    torch.testing.assert_close(ceiling, torch.tensor([0.6, 1.0]))
    torch.testing.assert_close(
        reach_ceiling(ref, gt, 4.0, 1.0), torch.tensor([1.0, 1.0]))
    st = offset_stats(torch.tensor([0.5, -1.5, 2.5, -5.0]), 4.0, 0.5)
    assert st['coarse'] == 0.5 and st['out'] == 0.25
    assert st['median'] == 1.5


def test_misconfigurations_name_the_field():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import dfine_mmdet  # noqa: F401
    from dfine_mmdet.models.detectors import fill_fdr_settings
    register_all_modules(init_default_scope=True)
    mmdet_assigner = dict(
        type='HungarianAssigner',
        match_costs=[dict(type='FocalLossCost', weight=2.0)])
    with pytest.raises(TypeError, match='HungarianAssigner'):
        MODELS.build(
            dict(
                type='DINOFDRHead',
                num_classes=3,
                embed_dims=32,
                train_cfg=dict(assigner=mmdet_assigner)))
    with pytest.raises(ValueError, match='sigmoid'):
        MODELS.build(
            dict(
                type='DINOFDRHead',
                num_classes=3,
                loss_cls=dict(type='CrossEntropyLoss'),
                train_cfg=dict(assigner=dict(type='DFINEHungarianAssigner'))))
    with pytest.raises(
            ValueError, match=r'model\.decoder\.reg_max.*'
            r'bbox_coder\.reg_max'):
        fill_fdr_settings(
            dict(num_layers=2, layer_cfg=dict(), reg_max=16),
            dict(bbox_coder=dict(type='FDRBBoxCoder', reg_max=32)))
    with pytest.raises(
            ValueError,
            match=r'bbox_head\.embed_dims.*'
            r'self_attn_cfg\.embed_dims'):
        fill_fdr_settings(
            dict(
                num_layers=2,
                layer_cfg=dict(self_attn_cfg=dict(embed_dims=64))),
            dict(embed_dims=128))


def test_detach_corners_stops_gradient_at_the_previous_layer(fdr_cfg):
    """``decoder.detach_corners=True`` (an issue-17 ablation): the last
    layer's box gets no gradient into layer 0's corner branch; D-FINE's
    default (un-detached accumulation) does."""
    grads = {}
    for detach in (False, True):
        cfg = copy.deepcopy(fdr_cfg)
        cfg.model.decoder.detach_corners = detach
        model = build_detector(cfg)
        model.train()
        with torch.no_grad():  # non-uniform distributions
            for branch in model.bbox_head.reg_branches[:NUM_LAYERS]:
                branch[-1].weight.normal_(0, 0.5)
        batch = first_batch(cfg.train_dataloader)
        data = model.data_preprocessor(batch, True)
        feats = model.extract_feat(data['inputs'])
        out = model.forward_transformer(feats, data['data_samples'])
        out['references'][-1].sum().backward()
        first = model.bbox_head.reg_branches[0][-1].weight.grad
        last = model.bbox_head.reg_branches[NUM_LAYERS - 1][-1].weight.grad
        assert last is not None and last.abs().sum() > 0
        grads[detach] = 0. if first is None else first.abs().sum().item()
    assert grads[False] > 0 and grads[True] == 0
