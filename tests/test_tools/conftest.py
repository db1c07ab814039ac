"""Fixtures for the tool tests: a tiny synthetic COCO dataset and a tiny plugin config.

The config is a 128x128 RTMDet-tiny (inherited with the ``mmdet::`` scope, so it needs
the installed MMDetection's packaged configs) that carries the plugin's
``custom_imports``: a run only succeeds when the subprocess can import ``dfine_mmdet``.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

CLASSES = ('red', 'blue')
COLORS_BGR = {1: (0, 0, 255), 2: (255, 0, 0)}


def make_toy_coco(root, num_train=8, num_val=4, size=128, seed=0):
    """Write ``images/*.png`` + ``train.json``/``val.json`` (1-3 filled boxes/image)."""
    import cv2
    rng = np.random.default_rng(seed)
    img_dir = osp.join(root, 'images')
    os.makedirs(img_dir, exist_ok=True)
    ann_id = 1
    for split, count in (('train', num_train), ('val', num_val)):
        images, annotations = [], []
        for i in range(count):
            img_id = len(images) + 1
            name = f'{split}_{i:03d}.png'
            img = np.full((size, size, 3), 127, np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                w, h = (int(v) for v in rng.integers(16, size // 2, 2))
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                cat = int(rng.integers(1, 3))
                img[y:y + h, x:x + w] = COLORS_BGR[cat]
                annotations.append(dict(id=ann_id, image_id=img_id, category_id=cat,
                                        bbox=[x, y, w, h], area=w * h, iscrowd=0))
                ann_id += 1
            cv2.imwrite(osp.join(img_dir, name), img)
            images.append(dict(id=img_id, file_name=name, width=size, height=size))
        categories = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]
        with open(osp.join(root, f'{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return root


TINY_CONFIG = """\
# Tiny plugin config for the tool tests (written by tests/test_tools/conftest.py).
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
custom_imports = dict(imports=['dfine_mmdet'], allow_failed_imports=False)

data_root = {data_root!r}
classes = {classes!r}
norm_cfg = dict(type='BN')  # no SyncBN: also runs as CPU DDP (gloo)
model = dict(
    use_syncbn=False,
    backbone=dict(init_cfg=None, norm_cfg=norm_cfg),  # no pretrained download
    neck=dict(norm_cfg=norm_cfg),
    # exp_on_reg: box edges exp(x) * stride > 0, so an untrained model still predicts valid
    # (non-degenerate) boxes and the COCO metric always has detections to score
    bbox_head=dict(num_classes=2, norm_cfg=norm_cfg, exp_on_reg=True))
randomness = dict(seed=0)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes), ann_file='train.json',
                 data_prefix=dict(img='images/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes), ann_file='val.json',
                 data_prefix=dict(img='images/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1, dynamic_intervals=None)
custom_hooks = []
model.update(test_cfg=dict(score_thr=0.0))  # keep detections, so the COCO metric is computed
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
"""


@pytest.fixture(scope='session')
def toy_coco(tmp_path_factory):
    return make_toy_coco(str(tmp_path_factory.mktemp('toy_coco')))


@pytest.fixture(scope='session')
def tiny_config(toy_coco, tmp_path_factory):
    """Path of a tiny plugin config (RTMDet-tiny, 2 classes, 1 epoch of 2 iterations)."""
    path = tmp_path_factory.mktemp('tiny_cfg') / 'tiny_plugin_rtmdet.py'
    path.write_text(TINY_CONFIG.format(data_root=toy_coco + '/', classes=CLASSES))
    return str(path)


def run_cli(cmd, cwd, timeout=900, env=None):
    """Run a command line tool; return its combined output, failing the test on rc != 0."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(map(str, cmd))} failed ({proc.returncode}):\n{out[-5000:]}'
    return out


def venv_script(name):
    """A console script installed beside the running interpreter (e.g. ``mim``)."""
    path = osp.join(osp.dirname(sys.executable), name)
    assert osp.exists(path), f'{path} missing; run: bash tools/setup_env.sh'
    return path


@pytest.fixture(scope='session')
def cli():
    """``cli(cmd, cwd, timeout=900, env=None) -> output``; fails the test on a non-zero exit."""
    return run_cli


@pytest.fixture(scope='session')
def mim_bin():
    return venv_script('mim')


@pytest.fixture(scope='session')
def mim_trained(tiny_config, tmp_path_factory):
    """``mim train mmdetection <plugin config>`` run from an unrelated directory.

    Returns ``(work_dir, checkpoint, output)``.
    """
    work = tmp_path_factory.mktemp('mim_train')
    out = run_cli([venv_script('mim'), 'train', 'mmdetection', tiny_config,
                   '--work-dir', str(work / 'wd')], cwd=str(work))
    return str(work / 'wd'), str(work / 'wd' / 'epoch_1.pth'), out
