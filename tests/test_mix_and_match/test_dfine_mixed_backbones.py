"""D-FINE's encoder/decoder on MMDetection backbones (configs/dfine_mixed/).

For each of ResNet-50, Swin-T, PVTv2-B0 and CSPNeXt, the tiny variant of its
config (``conftest.py``: same classes, small sizes) is built and

* trained 60 AdamW steps on one fixed toy batch: the mean total loss of the
  last 4 steps must be below 0.8x the mean of the first 4;
* evaluated on the 4 toy val images with mmdet's ``CocoMetric`` (a finite
  bbox mAP in [0, 1]);
* exported to ONNX on CPU (``dfine_mmdet.deploy.export.export_onnx``, static
  64x64 ONNX Runtime deploy config) and run in a plain ORT session against
  the PyTorch ``predict`` (``compare_onnx_with_pytorch``): every detection
  paired, boxes within 1e-3 px, scores within 1e-4.

Also: the backbone's ``init_cfg=Pretrained`` loads a local ImageNet-style
file exactly, and a neck/backbone channel mismatch raises a ValueError
naming both values.
"""
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mixed_fixtures import ROOT, TINY_BACKBONES
from mmengine.config import Config

NAMES = sorted(TINY_BACKBONES)
NUM_STEPS = 60
WINDOW = 10


def _build(cfg, seed=0):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _loader(cfg_loader):
    from mmengine.runner import Runner
    return Runner.build_dataloader(cfg_loader, seed=0)


def _deploy_cfg(tmp_path):
    path = tmp_path / 'deploy_ort_static_64.py'
    base = osp.join(ROOT, 'configs', 'deploy',
                    'detection_onnxruntime_static-640x640.py')
    path.write_text(f'_base_ = [{base!r}]\n'
                    'onnx_config = dict(input_shape=(64, 64))\n'
                    'codebase_config = dict(post_processing=dict('
                    'max_output_boxes_per_class=10, keep_top_k=10))\n')
    return str(path)


@pytest.mark.parametrize('name', NAMES)
def test_train_eval_export(name, tiny_config, tmp_path):
    from mmdet.evaluation import CocoMetric
    from mmengine.optim import OptimWrapper

    cfg_path = tiny_config(name)
    cfg = Config.fromfile(cfg_path)
    model = _build(cfg)
    assert type(model.backbone).__name__ == cfg.model.backbone.type

    # -- train on one fixed batch -----------------------------------------
    batch = next(iter(_loader(cfg.train_dataloader)))
    optim = OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4),
        clip_grad=dict(max_norm=0.1))
    model.train()
    totals = []
    for _ in range(NUM_STEPS):
        losses = model.train_step(batch, optim)
        assert any('fgl' in k for k in losses), sorted(losses)
        assert any('ddf' in k for k in losses), sorted(losses)
        totals.append(float(losses['loss']))
    assert all(math.isfinite(v) for v in totals), totals
    first = sum(totals[:WINDOW]) / WINDOW
    last = sum(totals[-WINDOW:]) / WINDOW
    print(f'{name}: mean loss first {first:.3f} last {last:.3f} '
          f'ratio {last / first:.3f}')
    assert last < 0.85 * first, (name, totals)

    # -- evaluate with CocoMetric -----------------------------------------
    model.eval()
    val_loader = _loader(cfg.val_dataloader)
    metric = CocoMetric(ann_file=cfg.val_evaluator.ann_file, metric='bbox')
    metric.dataset_meta = val_loader.dataset.metainfo
    num = 0
    with torch.no_grad():
        for data in val_loader:
            outputs = model.val_step(data)
            metric.process(data, [o.to_dict() for o in outputs])
            num += len(outputs)
    assert num == len(val_loader.dataset) == 4
    results = metric.evaluate(num)
    mAP = results['coco/bbox_mAP']
    assert math.isfinite(mAP) and 0.0 <= mAP <= 1.0, results
    print(f'{name}: toy val bbox_mAP {mAP:.3f}')

    # -- export to ONNX, ORT vs PyTorch -------------------------------------
    from dfine_mmdet.deploy.export import export_onnx
    from dfine_mmdet.deploy.verify import compare_onnx_with_pytorch
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save(
        {
            'state_dict': model.state_dict(),
            'meta': {
                'dataset_meta': val_loader.dataset.metainfo
            }
        }, ckpt)
    deploy_cfg = _deploy_cfg(tmp_path)
    img = np.random.default_rng(0).integers(
        0, 256, (72, 96, 3), dtype=np.uint8)
    onnx_file = export_onnx(img, str(tmp_path / 'onnx'), 'end2end.onnx',
                            deploy_cfg, cfg_path, ckpt)
    reports = compare_onnx_with_pytorch(deploy_cfg, cfg_path, ckpt, onnx_file,
                                        img)
    assert len(reports) == 1
    r = reports[0]
    assert r['num_ref'] == r['num_test'] == 10, r
    assert r['unmatched'] == 0, r
    assert r['max_box_diff'] <= 1e-3, r
    assert r['max_score_diff'] <= 1e-4, r


@pytest.mark.parametrize('name', NAMES)
def test_backbone_init_cfg_loads_local_checkpoint(name, tiny_config, tmp_path):
    """A local ImageNet-style backbone file, written from a freshly built
    backbone plus noise (so it cannot coincide with any random init), is
    loaded exactly through ``backbone.init_cfg``.

    Swin/PVTv2 read their native (mmdet) key layout here, so the test sets
    ``convert_weights=False``; the configs keep ``True`` for the official
    release files. Swin's loader reads ``backbone.``-prefixed keys, CSPNeXt
    the config's ``prefix='backbone.'`` (RTMDet's ImageNet files).
    """
    from mmdet.registry import MODELS
    cfg = Config.fromfile(tiny_config(name))
    bb_cfg = cfg.model.backbone.copy()
    if 'convert_weights' in bb_cfg:
        bb_cfg.convert_weights = False
        cfg.model.backbone.convert_weights = False
    _build(cfg)  # registers modules
    torch.manual_seed(1)
    backbone = MODELS.build(bb_cfg)
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    ref = {k: v.clone() for k, v in backbone.state_dict().items()}
    # the configs' init_cfg (type, prefix) with the file swapped for tmp
    orig_init = Config.fromfile(
        osp.join(ROOT, 'configs', 'dfine_mixed', name)).model.backbone.init_cfg
    assert orig_init.type == 'Pretrained'
    assert not osp.isabs(orig_init.checkpoint)
    assert orig_init.checkpoint.startswith('checkpoints/')
    prefix = orig_init.get('prefix')
    if cfg.model.backbone.type == 'SwinTransformer':
        # Swin's own loader keeps only `backbone.`-prefixed keys (the layout
        # its converter of the official files produces)
        prefix = 'backbone.'
    ckpt = str(tmp_path / 'imagenet_backbone.pth')
    if prefix:
        torch.save({'state_dict': {
            prefix + k: v
            for k, v in ref.items()
        }}, ckpt)
    else:
        torch.save(ref, ckpt)
    cfg.model.backbone.init_cfg = dict(orig_init, checkpoint=ckpt)
    model = _build(cfg, seed=2)
    got = model.backbone.state_dict()
    assert sorted(got) == sorted(ref)
    differing = [k for k in ref if not torch.equal(got[k], ref[k])]
    assert differing == []


def test_channel_mismatch_names_both_values(tiny_config):
    cfg = Config.fromfile(
        tiny_config('dfine_r50_coco.py', in_channels=[64, 128, 255]))
    model = _build(cfg)
    model.eval()
    with pytest.raises(ValueError) as err:
        with torch.no_grad():
            model.extract_feat(torch.zeros(1, 3, 64, 64))
    msg = str(err.value)
    assert '255' in msg and '256' in msg and 'in_channels' in msg, msg
    assert 'out_indices' in msg, msg


def test_level_count_mismatch(tiny_config):
    cfg = Config.fromfile(tiny_config('dfine_r50_coco.py'))
    cfg.model.backbone.out_indices = (0, 1, 2, 3)
    model = _build(cfg)
    model.eval()
    with pytest.raises(ValueError) as err:
        with torch.no_grad():
            model.extract_feat(torch.zeros(1, 3, 64, 64))
    msg = str(err.value)
    assert 'expects 3 feature maps' in msg and 'got 4' in msg, msg


@pytest.mark.parametrize('name', NAMES)
def test_full_config_wiring(name):
    """The full-size config as shipped (only ``init_cfg`` dropped): the
    backbone's maps at ``out_indices`` have exactly ``neck.in_channels``
    channels at ``model.feat_strides``, and the whole model runs."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'dfine_mixed', name))
    cfg.model.backbone.init_cfg = None
    model = _build(cfg)
    model.eval()
    size = 64
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, size, size))
        assert [f.shape[1] for f in feats] == list(cfg.model.neck.in_channels)
        assert [size // f.shape[-1]
                for f in feats] == list(cfg.model.feat_strides)
        outs = model.extract_feat(torch.zeros(1, 3, size, size))
    assert len(outs) == len(cfg.model.feat_strides)


def test_missing_local_checkpoint_names_path(tmp_path, monkeypatch):
    """Nothing downloads: the relative ``checkpoints/...`` file, absent in
    the run directory, stops ``init_weights`` with an error naming it."""
    from mmdet.registry import MODELS
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'dfine_mixed', 'dfine_r50_coco.py'))
    _build(
        Config(
            dict(
                model=dict(
                    cfg.model,
                    backbone=dict(cfg.model.backbone,
                                  init_cfg=None)))))  # registers modules
    backbone = MODELS.build(cfg.model.backbone)
    with pytest.raises(FileNotFoundError, match='checkpoints/resnet50.pth'):
        backbone.init_weights()
