"""``python tools/test.py``, ``bash tools/dist_train.sh`` (CPU DDP over gloo)
and ``tools/train.py --resume`` after a killed run, on the tiny
D-FINE-N config of ``conftest.py``.

The wrappers run MMDetection's own scripts; without CUDA they initialise a
gloo process group themselves and drop DDP's ``device_ids`` (see
``dfine_mmdet/launch.py``).
"""
import os.path as osp
import re
import socket
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_tools_test_py_evaluates_checkpoint(mim_trained, tiny_config, tmp_path,
                                            cli):
    _, ckpt, _ = mim_trained
    out = cli([
        sys.executable,
        osp.join(ROOT, 'tools', 'test.py'), tiny_config, ckpt, '--work-dir',
        str(tmp_path / 'wd')
    ],
              cwd=str(tmp_path))
    assert re.search(r'Epoch\(test\) \[1/1\].*coco/bbox_mAP: [0-9.]+',
                     out), out[-3000:]


def test_dist_train_sh_runs_two_cpu_processes(tiny_config, tmp_path, cli):
    out = cli([
        'bash',
        osp.join(ROOT, 'tools', 'dist_train.sh'), tiny_config, '2',
        '--work-dir',
        str(tmp_path / 'wd')
    ],
              cwd=str(tmp_path),
              env=dict(PORT=str(_free_port()), PYTHON=sys.executable))
    assert 'Distributed training: True' in out and 'GPU number: 2' in out, out[
        -3000:]
    # 8 training images, batch 4 per process, 2 processes -> 1 iteration per
    # epoch
    assert re.search(r'Epoch\(train\) \[1\]\[1/1\]', out), out[-3000:]
    assert osp.isfile(tmp_path / 'wd' / 'epoch_1.pth')


def test_resume_after_a_killed_run(tiny_config, tmp_path, cli):
    """``python tools/train.py CFG --resume`` after the first run was killed
    (SIGKILL) in the middle of training: it continues from the checkpoint
    ``last_checkpoint`` names, with the epoch counter of that checkpoint, and
    finishes the
    schedule."""
    import os
    import subprocess
    import time

    import torch
    wd = tmp_path / 'wd'
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'), tiny_config, '--work-dir',
        str(wd), '--cfg-options', 'train_cfg.max_epochs=3'
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=str(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ))
    last = wd / 'last_checkpoint'
    deadline = time.monotonic() + 600
    try:
        while not last.exists():
            assert proc.poll() is None, (
                f'training exited ({proc.returncode}) before a checkpoint')
            assert time.monotonic() < deadline, 'no checkpoint after 600 s'
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    ckpt = last.read_text().strip()
    epoch = torch.load(
        ckpt, map_location='cpu', weights_only=False)['meta']['epoch']
    assert 1 <= epoch < 3, f'the run was not interrupted mid-schedule ({ckpt})'

    out = cli(
        cmd[:-2] + ['--resume', '--cfg-options', 'train_cfg.max_epochs=3'],
        cwd=str(tmp_path))
    assert f'resumed epoch: {epoch}, iter: {2 * epoch}' in out, out[-3000:]
    assert not re.search(rf'Epoch\(train\) \[{epoch}\]\[', out)
    assert re.search(r'Epoch\(train\) \[3\]\[2/2\]', out), out[-3000:]
    final = torch.load(
        str(wd / 'epoch_3.pth'), map_location='cpu', weights_only=False)
    assert (final['meta']['epoch'], final['meta']['iter']) == (3, 6)
