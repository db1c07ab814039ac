"""``mim train`` / ``mim test`` with the chosen stack (onedl-mim +
onedl-mmdetection).

The README's training command is ``mim train mmdetection CONFIG``: with
onedl-mim the abbreviation ``mmdet`` is ambiguous (``mmdet`` vs ``mmdet3d``),
``mmdetection`` is not. The training subprocess that mim starts imports
``dfine_mmdet`` through the config's ``custom_imports`` (the plugin is
pip-installed), which is what these runs prove.
"""
import os.path as osp
import re

import mmdet
from mim.utils import get_installed_path, module_full_name


def test_mim_resolves_mmdetection_and_finds_its_scripts():
    full_name = module_full_name('mmdetection')
    assert full_name, "mim cannot resolve 'mmdetection'"
    pkg_root = get_installed_path(full_name)
    assert osp.realpath(pkg_root) == osp.realpath(osp.dirname(mmdet.__file__))
    for script in ('train.py', 'test.py'):
        assert osp.isfile(osp.join(pkg_root, '.mim', 'tools', script)), script


def test_mim_train_runs_a_plugin_config(mim_trained):
    work_dir, ckpt, out = mim_trained
    assert 'Training finished successfully' in out
    assert re.search(r'Training command is .*\.mim/tools/train\.py',
                     out), out[-3000:]
    losses = [
        float(v) for v in re.findall(
            r'Epoch\(train\) \[1\]\[\d/2\].* loss: ([0-9.]+)', out)
    ]
    assert len(losses) == 2 and all(
        0 < v < 1e3 for v in losses), losses  # 2 iterations, finite
    assert osp.isfile(ckpt)
    assert 'coco/bbox_mAP' in out  # validation ran with the COCO metric


def test_mim_test_evaluates_the_checkpoint(mim_trained, tiny_config, tmp_path,
                                           cli, mim_bin):
    _, ckpt, _ = mim_trained
    out = cli([
        mim_bin, 'test', 'mmdetection', tiny_config, '--checkpoint', ckpt,
        '--work-dir',
        str(tmp_path / 'wd')
    ],
              cwd=str(tmp_path))
    assert re.search(r'Epoch\(test\) \[1/1\].*coco/bbox_mAP: [0-9.]+',
                     out), out[-3000:]
