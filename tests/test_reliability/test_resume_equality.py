"""Kill at a random point + ``--resume`` ends with the same weights (model
and EMA) as an uninterrupted run, bit-exact on CPU, across the stop-aug
epoch (docs/reliability.md)."""
import os
import os.path as osp
import random
import shutil
import subprocess
import sys
import time

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

EXTRA = """
train_pipeline.insert(3, dict(type='RandomFlip', prob=0.5))
train_pipeline.insert(3, dict(type='RandomPhotometricDistort', p=0.5))
train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
train_cfg = dict(max_epochs=3, val_interval=100)  # no val between epochs
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=2),
                     ema=dict(decay=0.9, warmups=2),
                     stop_aug=dict(stop_epoch=2))
custom_hooks = [
    dict(type='RNGStateHook'){more}
]
"""


def _cfg(tmp_path, rel, data_root, name, more=''):
    path = tmp_path / name
    path.write_text(rel.config_text(data_root, EXTRA.format(more=more)))
    return str(path)


def _train(cfg, wd, resume=False):
    cmd = ['tools/train.py', cfg, '--work-dir', str(wd)]
    return cmd + (['--resume'] if resume else [])


def _weights(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    return ckpt['state_dict'], ckpt['ema_state_dict'], ckpt['meta']


def _differing(a, b):
    assert a.keys() == b.keys()
    return [
        k for k in a
        if isinstance(a[k], torch.Tensor) and not torch.equal(a[k], b[k])
    ]


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted_run(toy_copy, tmp_path, rel):
    cfg = _cfg(tmp_path, rel, toy_copy, 'resume.py')
    rc, out = rel.run(_train(cfg, tmp_path / 'full'))
    assert rc == 0, out[-3000:]

    wd = tmp_path / 'killed'
    proc = subprocess.Popen(
        [sys.executable] + _train(cfg, wd),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ))
    delay = random.uniform(0.0, 1.0)  # a random point after epoch 1
    try:
        deadline = time.monotonic() + 300
        while not (wd / 'last_checkpoint').exists():
            assert proc.poll() is None, 'training ended before a checkpoint'
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        proc.kill()
        proc.wait()
    last = (wd / 'last_checkpoint').read_text().strip()
    epoch = _weights(last)[2]['epoch']
    assert epoch < 3, f'not interrupted (delay {delay:.2f}s)'
    assert 'rng_state' in torch.load(
        last, map_location='cpu', weights_only=False)
    copy = tmp_path / 'killed_copy'
    shutil.copytree(wd, copy)
    (copy / 'last_checkpoint').write_text(str(copy / osp.basename(last)))

    rc, out = rel.run(_train(cfg, wd, resume=True))
    assert rc == 0, out[-3000:]
    assert f'resumed epoch: {epoch}' in out
    assert 'RNGStateHook: restored' in out
    full_sd, full_ema, full_meta = _weights(tmp_path / 'full' / 'epoch_3.pth')
    res_sd, res_ema, res_meta = _weights(wd / 'epoch_3.pth')
    assert (full_meta['epoch'], full_meta['iter']) == \
        (res_meta['epoch'], res_meta['iter'])
    assert full_meta['epoch'] == 3
    assert _differing(full_sd, res_sd) == [], f'killed after epoch {epoch}'
    assert _differing(full_ema, res_ema) == []

    # control: the same resume without RNGStateHook's restore diverges
    # (so the equality above is not vacuous)
    ctrl = _cfg(tmp_path, rel, toy_copy, 'ctrl.py')
    ctrl_text = open(ctrl).read().replace(
        "dict(type='RNGStateHook')", "dict(type='DFINEStopAugHook', "
        "stop_epoch=2, priority='LOWEST')")
    with open(ctrl, 'w') as f:
        f.write(ctrl_text)
    rc, out = rel.run(_train(ctrl, tmp_path / 'killed_copy', resume=True))
    assert rc == 0, out[-3000:]
    ctrl_sd, _, _ = _weights(tmp_path / 'killed_copy' / 'epoch_3.pth')
    assert _differing(full_sd, ctrl_sd), 'RNG restore made no difference'
