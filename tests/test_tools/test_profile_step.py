"""``dfine_mmdet.benchmark.profiling`` and ``tools/benchmark/profile_step.py``
on a tiny D-FINE-N (64x64, batch 2, 10 queries): every scope the profile
reports is populated, the backward time is attributed to the modules that
created the autograd nodes, and the tool prints its tables."""
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'dfine', 'dfine_hgnetv2_n_coco.py')
TINY = dict(model=dict(num_queries=10, dn_cfg=dict(num_denoising=10)))


@pytest.fixture(scope='module')
def profile():
    import torch

    from dfine_mmdet.benchmark.profiling import (build_training,
                                                 profile_train_step)
    torch.set_num_threads(1)
    model, optim, data = build_training(
        CONFIG, batch_size=2, size=64, num_gt=3, cfg_options=TINY)
    return model, profile_train_step(
        model, optim, data, warmup=1, iters=1, max_depth=2)


def test_scopes_cover_the_step(profile):
    _, res = profile
    sc = res['scopes']
    assert res['missing_methods'] == []
    for name in ('fwd:backbone', 'fwd:neck', 'fwd:decoder', 'loss',
                 'loss.matching', 'loss.go_lsd_union', 'backward', 'optimizer',
                 'fwd:bbox_head.loss_cls'):
        assert name in sc and sc[name]['total_ms'] > 0, name
    # one Hungarian matching per output: 3 decoder layers, pre head, encoder
    assert sc['loss.matching']['calls'] == 5
    assert sc['loss.go_lsd_union']['calls'] == 1
    # nested scopes: a module's time is inside its parent's
    assert 0 < sc['fwd:backbone.stages.0']['total_ms'] <= \
        sc['fwd:backbone']['total_ms']
    assert sc['fwd:decoder.layers.2']['calls'] == 1
    assert sc['loss.matching']['total_ms'] <= sc['loss']['total_ms']


def test_backward_is_attributed_to_modules(profile):
    _, res = profile
    bwd = res['backward_rollup']
    for name in ('fwd:backbone', 'fwd:neck', 'fwd:decoder'):
        assert bwd.get(name, 0) > 0, name
    attributed = sum(v for k, v in res['backward'].items()
                     if k.startswith('fwd:') or k.startswith('loss'))
    # the autograd nodes of the network and the loss make up the backward
    # pass (the rest is engine overhead between nodes)
    assert attributed >= 0.5 * res['scopes']['backward']['total_ms']
    assert res['backward'].get('(unattributed)', 0) <= \
        0.25 * res['scopes']['backward']['total_ms']


def test_hooks_and_wrappers_are_removed(profile):
    model, _ = profile
    assert not model._forward_pre_hooks
    assert not model.backbone._forward_hooks
    assert 'match' not in model.bbox_head.assigner.__dict__
    assert 'loss' not in model.bbox_head.__dict__


def test_format_report(profile):
    from dfine_mmdet.benchmark.profiling import format_report
    text = format_report(profile[1], 'tiny')
    assert '| backward |' in text
    assert '| loss.matching |' in text
    assert 'top ATen ops, backward' in text


def test_profile_step_tool(tmp_path):
    out = tmp_path / 'profile.md'
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'profile_step.py'), '--config',
        osp.join(ROOT, 'configs', 'dfine',
                 'dfine_hgnetv2_n_coco.py'), '--size', '64', '--batch-size',
        '1', '--gt', '2', '--depth', '1', '--warmup', '0', '--out',
        str(out), '--cfg-options', 'model.num_queries=10',
        'model.dn_cfg.num_denoising=10'
    ],
                          capture_output=True,
                          text=True,
                          timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '| module (forward scope) |' in proc.stdout
    assert '| backbone |' in proc.stdout
    assert out.read_text().strip() in proc.stdout
