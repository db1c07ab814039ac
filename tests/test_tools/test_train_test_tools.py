"""``python tools/test.py`` and ``bash tools/dist_train.sh`` (CPU DDP over gloo), on the tiny
D-FINE-N config of ``conftest.py``.

The wrappers run MMDetection's own scripts; without CUDA they initialise a gloo process
group themselves and drop DDP's ``device_ids`` (see ``tools/_launch.py``).
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


def test_tools_test_py_evaluates_checkpoint(mim_trained, tiny_config, tmp_path, cli):
    _, ckpt, _ = mim_trained
    out = cli([sys.executable, osp.join(ROOT, 'tools', 'test.py'), tiny_config, ckpt,
                   '--work-dir', str(tmp_path / 'wd')], cwd=str(tmp_path))
    assert re.search(r'Epoch\(test\) \[1/1\].*coco/bbox_mAP: [0-9.]+', out), out[-3000:]


def test_dist_train_sh_runs_two_cpu_processes(tiny_config, tmp_path, cli):
    out = cli(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), tiny_config, '2',
               '--work-dir', str(tmp_path / 'wd')], cwd=str(tmp_path),
              env=dict(PORT=str(_free_port()), PYTHON=sys.executable))
    assert 'Distributed training: True' in out and 'GPU number: 2' in out, out[-3000:]
    # 8 training images, batch 4 per process, 2 processes -> 1 iteration per epoch
    assert re.search(r'Epoch\(train\) \[1\]\[1/1\]', out), out[-3000:]
    assert osp.isfile(tmp_path / 'wd' / 'epoch_1.pth')
