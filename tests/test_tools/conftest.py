"""Fixtures for the tool tests: a tiny D-FINE config on the synthetic toy set.

``tiny_config`` inherits ``configs/dfine/toy/dfine_hgnetv2_n_toy.py``
(D-FINE-N, the [training] toy config) and shrinks it to 64x64 inputs, 10
queries, one epoch of two iterations on the 8-image set written by
``tools/make_toy_dataset.py``. The config carries the plugin's
``custom_imports``, so a run only succeeds when the subprocess (started by
``mim`` or the ``tools/`` wrappers) imports ``dfine_mmdet`` and builds the
plugin's components.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_CONFIG = osp.join(ROOT, 'configs', 'dfine', 'toy',
                      'dfine_hgnetv2_n_toy.py')

TINY_CONFIG = """\
# D-FINE-N, 64x64, 1 epoch of 2 iterations
# (written by tests/test_tools/conftest.py)
_base_ = {toy_cfg!r}
data_root = {data_root!r}
img = 64
model = dict(num_queries=10, eval_spatial_size=(img, img),
             dn_cfg=dict(num_denoising=10))
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SanitizeBoundingBoxes', min_size=1, drop_ignored=True),
    dict(type='Resize', scale=(img, img), keep_ratio=False, backend='pillow'),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='Resize', scale=(img, img), keep_ratio=False, backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
randomness = dict(seed=0)
"""


@pytest.fixture(scope='session')
def tiny_config(toy_coco, tmp_path_factory):
    """Path of the tiny plugin config (see the module docstring)."""
    assert osp.isfile(TOY_CONFIG), f'{TOY_CONFIG} is missing'
    path = tmp_path_factory.mktemp('tiny_cfg') / 'tiny_dfine_n.py'
    path.write_text(
        TINY_CONFIG.format(toy_cfg=TOY_CONFIG, data_root=toy_coco + '/'))
    return str(path)


def run_cli(cmd, cwd, timeout=900, env=None):
    """Run a command line tool; return its combined output, failing the test
    on rc != 0."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f'{" ".join(map(str, cmd))} failed ({proc.returncode}):\n{out[-5000:]}'
    )
    return out


def venv_script(name):
    """A console script installed beside the running interpreter (e.g.
    ``mim``)."""
    path = osp.join(osp.dirname(sys.executable), name)
    assert osp.exists(path), f'{path} missing; run: bash tools/setup_env.sh'
    return path


@pytest.fixture(scope='session')
def cli():
    """``cli(cmd, cwd, timeout=900, env=None) -> output``; fails the test on
    a non-zero exit."""
    return run_cli


@pytest.fixture(scope='session')
def mim_bin():
    return venv_script('mim')


@pytest.fixture(scope='session')
def mim_trained(tiny_config, tmp_path_factory):
    """``mim train mmdetection <plugin config>`` run from an unrelated
    directory.

    Returns ``(work_dir, checkpoint, output)``.
    """
    work = tmp_path_factory.mktemp('mim_train')
    out = run_cli([
        venv_script('mim'), 'train', 'mmdetection', tiny_config, '--work-dir',
        str(work / 'wd')
    ],
                  cwd=str(work))
    return str(work / 'wd'), str(work / 'wd' / 'epoch_1.pth'), out
