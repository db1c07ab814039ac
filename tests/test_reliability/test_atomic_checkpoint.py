"""A checkpoint save interrupted midway through a real write, then
``--resume`` (docs/reliability.md, "Training faults").

The interruption is the operating system's: once the first checkpoint is
complete, the test lowers the training process's file-size limit
(``RLIMIT_FSIZE`` through ``prlimit``) to half a checkpoint, so the next
checkpoint write fails with ``OSError: [Errno 27] File too large`` halfway
through the bytes, and the process dies (as it would on a full disk; a
SIGKILL at that moment leaves the same files, plus a temp file that the next
run removes). Nothing in MMEngine or the plugin is replaced.

* ``AtomicCheckpointHook``: ``last_checkpoint`` still names ``epoch_1.pth``,
  which is complete; no ``epoch_2.pth`` exists.
* ``CheckpointHook`` (MMEngine's, ``max_keep_ckpts=1``), the control: it
  deleted ``epoch_1.pth`` before writing ``epoch_2.pth``, so
  ``last_checkpoint`` names a deleted file and ``epoch_2.pth`` is truncated.
* ``--resume`` with ``AtomicCheckpointHook`` when ``last_checkpoint`` names a
  truncated file falls back to the newest complete checkpoint (logged) and
  finishes the schedule; when there is none, one ``error:`` line names the
  file and the problem.
"""
import os
import os.path as osp
import re
import resource
import shutil
import subprocess
import sys
import time

import pytest
import torch

from dfine_mmdet.checkpoint import checkpoint_file_problem

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

HOOK = """
train_cfg = dict(max_epochs=3, val_interval=100)
default_hooks = dict(checkpoint=dict(
    _delete_=True, type={hook!r}, interval=1, max_keep_ckpts=1))
"""


def _config(rel, toy, tmp, hook):
    path = tmp / f'tiny_{hook}.py'
    path.write_text(rel.config_text(toy, HOOK.format(hook=hook)))
    return str(path)


def _train_until_second_save_fails(cfg, wd, log):
    """Run tools/train.py; after the first checkpoint, limit the process's
    file size to half a checkpoint. Returns (returncode, output)."""
    with open(log, 'w') as out:
        proc = subprocess.Popen([
            sys.executable,
            osp.join(ROOT, 'tools', 'train.py'), cfg, '--work-dir', wd
        ],
                                cwd=ROOT,
                                stdout=out,
                                stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED='1'))
        last = osp.join(wd, 'last_checkpoint')
        deadline = time.monotonic() + 600
        try:
            while not osp.exists(last):
                assert proc.poll() is None, open(log).read()[-3000:]
                assert time.monotonic() < deadline, 'no checkpoint in 600 s'
                time.sleep(0.02)
            first = osp.join(wd, 'epoch_1.pth')
            size = os.path.getsize(first)
            _, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE,
                             (size // 2, hard))
            rc = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return rc, open(log).read()


@pytest.fixture(scope='module')
def interrupted(toy_coco, tmp_path_factory, rel):
    """{hook: (config, work_dir, output)} after the interrupted second save,
    for AtomicCheckpointHook and MMEngine's CheckpointHook."""
    tmp = tmp_path_factory.mktemp('interrupted')
    runs = {}
    for hook in ('AtomicCheckpointHook', 'CheckpointHook'):
        cfg = _config(rel, toy_coco + '/', tmp, hook)
        wd = str(tmp / f'wd_{hook}')
        rc, out = _train_until_second_save_fails(cfg, wd,
                                                 str(tmp / f'{hook}.log'))
        assert rc != 0, out[-3000:]
        assert 'File too large' in out, out[-3000:]  # the write was cut
        runs[hook] = (cfg, wd, out)
    return runs


@pytest.mark.slow
def test_interrupted_save_leaves_last_checkpoint_complete(interrupted):
    _, wd, out = interrupted['AtomicCheckpointHook']
    assert 'Epoch(train) [2][2/2]' in out, out[-3000:]  # died saving epoch 2
    named = open(osp.join(wd, 'last_checkpoint')).read().strip()
    assert named == osp.join(wd, 'epoch_1.pth')
    assert checkpoint_file_problem(named) is None
    ckpt = torch.load(named, map_location='cpu', weights_only=False)
    assert ckpt['meta']['epoch'] == 1
    assert not osp.exists(osp.join(wd, 'epoch_2.pth'))
    assert not [n for n in os.listdir(wd) if '.tmp-' in n], os.listdir(wd)

    # the control: MMEngine's CheckpointHook with the same settings
    _, wd, out = interrupted['CheckpointHook']
    assert 'Epoch(train) [2][2/2]' in out, out[-3000:]
    named = open(osp.join(wd, 'last_checkpoint')).read().strip()
    assert named == osp.join(wd, 'epoch_1.pth')
    assert not osp.exists(named)  # deleted before epoch_2 was written
    assert checkpoint_file_problem(osp.join(
        wd, 'epoch_2.pth')).startswith('truncated (')


@pytest.mark.slow
def test_resume_falls_back_from_a_truncated_last_checkpoint(
        interrupted, tmp_path, rel):
    """last_checkpoint names a truncated epoch_2.pth (what MMEngine's hook
    leaves when interrupted while re-saving after a new best score):
    AtomicCheckpointHook resumes from the complete epoch_1.pth, says so, and
    finishes; the continued run's checkpoints are complete."""
    cfg, src, _ = interrupted['AtomicCheckpointHook']
    wd = str(tmp_path / 'wd')
    shutil.copytree(src, wd)
    first = osp.join(wd, 'epoch_1.pth')
    with open(first, 'rb') as f:
        data = f.read()
    second = osp.join(wd, 'epoch_2.pth')
    with open(second, 'wb') as f:
        f.write(data[:len(data) // 2])
    with open(osp.join(wd, 'last_checkpoint'), 'w') as f:
        f.write(second)
    # a temp file left by a killed writer is removed by the next run
    stale = osp.join(wd, '.epoch_2.pth.tmp-999999')
    with open(stale, 'wb') as f:
        f.write(data[:100])

    rc, out = rel.run(['tools/train.py', cfg, '--work-dir', wd, '--resume'])
    assert rc == 0, out[-3000:]
    assert f'{osp.join(wd, "last_checkpoint")} names {second}, whose file ' \
        'is truncated (' in out, out[-3000:]
    assert f'resuming from {first}, the newest complete checkpoint' in out
    assert 'resumed epoch: 1, iter: 2' in out, out[-3000:]
    assert not re.search(r'Epoch\(train\) \[1\]\[', out)
    assert re.search(r'Epoch\(train\) \[3\]\[2/2\]', out), out[-3000:]
    assert not osp.exists(stale)
    final = osp.join(wd, 'epoch_3.pth')
    assert open(osp.join(wd, 'last_checkpoint')).read().strip() == final
    assert checkpoint_file_problem(final) is None
    ckpt = torch.load(final, map_location='cpu', weights_only=False)
    assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (3, 6)
    # max_keep_ckpts=1: the outdated checkpoints were deleted after saving
    assert sorted(n for n in os.listdir(wd)
                  if n.endswith('.pth')) == ['epoch_3.pth']


@pytest.mark.slow
def test_resume_without_a_complete_checkpoint_is_one_error(
        interrupted, tmp_path, rel):
    """The control's work dir (last_checkpoint names a deleted file, the
    only other checkpoint is truncated), resumed with AtomicCheckpointHook:
    one error naming both files, exit status 1, nothing trained."""
    cfg, _, _ = interrupted['AtomicCheckpointHook']
    _, src, _ = interrupted['CheckpointHook']
    wd = str(tmp_path / 'wd')
    shutil.copytree(src, wd)
    # last_checkpoint holds the absolute path of the original work dir
    with open(osp.join(wd, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(wd, 'epoch_1.pth'))
    rc, out = rel.run(['tools/train.py', cfg, '--work-dir', wd, '--resume'])
    assert rc == 1 and 'Traceback' not in out, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith(
        f'error: cannot resume: {osp.join(wd, "last_checkpoint")} names '
        f'{osp.join(wd, "epoch_1.pth")}, whose file is missing (no such '
        f"file), and {wd} holds no other complete checkpoint matching "
        f"'epoch_*.pth' (damaged: {osp.join(wd, 'epoch_2.pth')})"), last
    assert 'Epoch(train)' not in out
