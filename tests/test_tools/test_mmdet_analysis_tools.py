"""MMDetection's own analysis tools (``mim run mmdetection ...``) on a plugin
config.

Each test runs one command of README "Benchmark against MMDetection detectors"
on the tiny D-FINE-N toy config (tests/test_tools/conftest.py), from an
unrelated directory, so it only passes when mim's subprocess imports the
plugin through the config's ``custom_imports``.
"""
import json
import re

import pytest


@pytest.mark.slow
def test_get_flops(mim_bin, tiny_config, cli, tmp_path):
    """README: ``mim run mmdetection get_flops CFG``."""
    out = cli([
        mim_bin, 'run', 'mmdetection', 'get_flops', tiny_config,
        '--num-images', '1'
    ],
              cwd=str(tmp_path),
              timeout=600)
    flops = re.search(r'^Flops: ([\d.]+)([GM])', out, re.M)
    params = re.search(r'^Params: ([\d.]+)M', out, re.M)
    assert flops and params, out[-3000:]
    assert float(flops.group(1)) > 0
    # the parameter count is the model's sum(p.numel()) (the tool prints 3
    # decimals in M)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import dfine_mmdet  # noqa: F401
    register_all_modules(init_default_scope=True)
    model = MODELS.build(Config.fromfile(tiny_config).model)
    assert params.group(
        1
    ) == f'{sum(p.numel() for p in model.parameters()) / 1e6:.3f}', out[-500:]
    # the tool has no handle for grid_sample: the README says so, compare.py
    # counts it
    assert 'Unsupported operator aten::grid_sampler' in out


@pytest.mark.slow
def test_browse_dataset(mim_bin, tiny_config, cli, tmp_path):
    """README:
    ``mim run mmdetection browse_dataset CFG --not-show --output-dir DIR``."""
    out_dir = tmp_path / 'browse'
    cli([
        mim_bin, 'run', 'mmdetection', 'browse_dataset', tiny_config,
        '--not-show', '--output-dir',
        str(out_dir)
    ],
        cwd=str(tmp_path),
        timeout=600)
    written = sorted(p.name for p in out_dir.iterdir())
    assert len(written) == 8, written  # the 8 training images of the toy set


@pytest.mark.slow
def test_analyze_logs_plot_curve_by_dfine_loss_names(mim_bin, mim_trained, cli,
                                                     tmp_path):
    """README: ``mim run mmdetection analyze_logs plot_curve LOG.json
    --keys loss_vfl loss_fgl loss_ddf_aux_0 --style default --backend Agg
    --out curve.png``."""
    import glob
    import os.path as osp
    work_dir, _, _ = mim_trained
    logs = [
        p for p in glob.glob(osp.join(work_dir, '*', 'vis_data', '*.json'))
        if osp.basename(p) != 'scalars.json'
    ]
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        first = json.loads(f.readline())
    keys = ['loss_vfl', 'loss_fgl', 'loss_ddf_aux_0']
    assert all(k in first for k in keys), sorted(first)
    png = tmp_path / 'curve.png'
    out = cli([
        mim_bin, 'run', 'mmdetection', 'analyze_logs', 'plot_curve', logs[0],
        '--keys', *keys, '--style', 'default', '--backend', 'Agg', '--out',
        str(png)
    ],
              cwd=str(tmp_path),
              timeout=600)
    for k in keys:
        assert f'metric is {k}' in out
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_benchmark_inference_runs_or_fails_for_the_stated_reason(
        mim_bin, mim_trained, tmp_path):
    """README: ``mim run mmdetection benchmark CFG --checkpoint CKPT
    --task inference --cfg-options test_dataloader.num_workers=0``: FPS on a
    CUDA machine with ``psutil``; elsewhere it fails for the reason the README
    gives (no ``psutil`` / no CUDA)."""
    import importlib.util
    import os.path as osp
    import subprocess

    import torch
    work_dir, ckpt, _ = mim_trained
    cfgs = __import__('glob').glob(osp.join(
        work_dir, '*.py'))  # the config mim train dumped
    assert len(cfgs) == 1, cfgs
    cfg = cfgs[0]
    proc = subprocess.run([
        mim_bin, 'run', 'mmdetection', 'benchmark', cfg, '--checkpoint', ckpt,
        '--task', 'inference', '--max-iter', '4', '--num-warmup', '1',
        '--cfg-options', 'test_dataloader.num_workers=0'
    ],
                          cwd=str(tmp_path),
                          capture_output=True,
                          text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    has_psutil = importlib.util.find_spec('psutil') is not None
    if has_psutil and torch.cuda.is_available():
        assert proc.returncode == 0 and re.search(r'fps', out,
                                                  re.I), out[-3000:]
    else:
        assert proc.returncode != 0, out[-3000:]
        reason = ("'NoneType' object has no attribute 'Process'" if
                  not has_psutil else 'Torch not compiled with CUDA enabled')
        assert reason in out, out[-3000:]
