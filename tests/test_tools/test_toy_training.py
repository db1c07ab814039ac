"""D-FINE end to end through the tools: toy data, train.py + resume, CPU DDP,
mim, benchmarks.

All runs use D-FINE-N at 64x64 on an 8-image toy set
(``tools/make_toy_dataset.py``)
so that each command takes well under a minute on 2 CPU cores.  The tiny config
inherits ``configs/dfine/toy/dfine_hgnetv2_n_toy.py`` and puts the official
strong augmentation and a batch multi-scale augment back in, so the stop-epoch
switch has something to switch off.
"""
import json
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

from dfine_mmdet.benchmark.toy_data import make_toy_dataset  # noqa: E402

TINY_DFINE = """\
# D-FINE-N at 64x64 on the 8-image toy set
# (written by tests/test_tools/test_toy_training.py)
_base_ = {toy_cfg!r}
data_root = {data_root!r}
img = 64
model = dict(
    num_queries=10,
    eval_spatial_size=(img, img),
    dn_cfg=dict(num_denoising=10),
    data_preprocessor=dict(batch_augments=[
        dict(type='DFINEBatchMultiScaleResize', scales=[64, 96])]))
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SanitizeBoundingBoxes', min_size=1, drop_ignored=True),
    dict(type='RandomPhotometricDistort', p=0.5),
    dict(type='Expand', mean=(0, 0, 0), to_rgb=False, ratio_range=(1, 4),
         prob=0.5),
    dict(type='RandomIoUCrop', p=0.8),
    dict(type='SanitizeBoundingBoxes', min_size=1),
    dict(type='RandomFlip', prob=0.5),
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
    batch_size={batch_size},
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='coco/bbox_mAP',
                    rule='greater'),
    ema=dict(decay=0.998, warmups=100),
    stop_aug=dict(stop_epoch=1, reload_best_stage1=True))
custom_hooks = [dict(type='ClassHeadAdaptHook')]
"""

# one OpenMP thread per process: on a shared 2-core machine oversubscribed
# threads make a D-FINE step up to ~20x slower
# (tools/experiments/train_step.py)
ONE_THREAD = dict(OMP_NUM_THREADS='1')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='session')
def toy_data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('dfine_toy') / 'toy')
    make_toy_dataset(out, seed=1, num_train=8, num_val=4)
    return out


def _write_cfg(path, toy_data, batch_size=4):
    path.write_text(
        TINY_DFINE.format(
            toy_cfg=osp.join(ROOT, 'configs', 'dfine', 'toy',
                             'dfine_hgnetv2_n_toy.py'),
            data_root=toy_data + '/',
            batch_size=batch_size))
    return str(path)


@pytest.fixture(scope='session')
def tiny_dfine_cfg(toy_data, tmp_path_factory):
    return _write_cfg(
        tmp_path_factory.mktemp('dfine_cfg') / 'tiny_dfine_toy.py', toy_data)


# ------------------------------------------------------------------ toy data
def test_make_toy_dataset_is_deterministic_and_varied(tmp_path):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    make_toy_dataset(a, seed=3, num_train=40, num_val=8)
    make_toy_dataset(b, seed=3, num_train=40, num_val=8)
    make_toy_dataset(c, seed=4, num_train=40, num_val=8)
    ja = open(osp.join(a, 'annotations', 'instances_train.json')).read()
    assert ja == open(osp.join(b, 'annotations',
                               'instances_train.json')).read()
    assert ja != open(osp.join(c, 'annotations',
                               'instances_train.json')).read()
    for name in ('000000.png', '000017.png'):
        assert open(osp.join(a, 'train', name), 'rb').read() == \
            open(osp.join(b, 'train', name), 'rb').read()
    coco = json.loads(ja)
    assert [c['name']
            for c in coco['categories']] == ['square', 'circle', 'triangle']
    assert len(coco['images']) == 40
    sizes = {im['id']: (im['width'], im['height']) for im in coco['images']}
    anns = coco['annotations']
    assert {a['category_id'] for a in anns} == {1, 2, 3}
    sides = [min(a['bbox'][2:]) for a in anns]
    assert min(sides) < 8 and max(sides) > 64  # tiny to large
    assert len({a['image_id']
                for a in anns}) < 40  # some images without objects
    for a in anns:
        x, y, w, h = a['bbox']
        W, H = sizes[a['image_id']]
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H
        assert w >= 4 and h >= 4
    overlaps = 0
    for i, p in enumerate(anns):
        for q in anns[i + 1:]:
            if p['image_id'] == q['image_id']:
                ix = min(p['bbox'][0] + p['bbox'][2],
                         q['bbox'][0] + q['bbox'][2]) - \
                    max(p['bbox'][0], q['bbox'][0])
                iy = min(p['bbox'][1] + p['bbox'][3],
                         q['bbox'][1] + q['bbox'][3]) - \
                    max(p['bbox'][1], q['bbox'][1])
                overlaps += ix > 0 and iy > 0
    assert overlaps > 0


def test_make_toy_dataset_command_line(tmp_path, cli):
    """``python tools/make_toy_dataset.py --out DIR --seed S`` writes the same
    files as the library call with those arguments, and ``--category-ids``
    sets the json ids in class order; bad ids are refused by name."""
    out = str(tmp_path / 'cli')
    lib = str(tmp_path / 'lib')
    log = cli([
        sys.executable,
        osp.join(ROOT, 'tools',
                 'make_toy_dataset.py'), '--out', out, '--seed', '5',
        '--num-train', '6', '--num-val', '2', '--category-ids', '40', '7', '23'
    ],
              cwd=str(tmp_path))
    assert 'square (id 40), circle (id 7), triangle (id 23)' in log
    make_toy_dataset(
        lib,
        seed=5,
        num_train=6,
        num_val=2,
        cat_ids=(40, 7, 23),
        log=lambda m: None)
    for split in ('train', 'val'):
        name = osp.join('annotations', f'instances_{split}.json')
        assert open(osp.join(out, name)).read() == open(osp.join(lib,
                                                                 name)).read()
    coco = json.load(
        open(osp.join(out, 'annotations', 'instances_train.json')))
    assert [(c['id'], c['name']) for c in coco['categories']] == \
        [(40, 'square'), (7, 'circle'), (23, 'triangle')]
    assert {a['category_id'] for a in coco['annotations']} <= {40, 7, 23}
    bad = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'make_toy_dataset.py'), '--out',
        str(tmp_path / 'bad'), '--category-ids', '3', '3', '4'
    ],
                         capture_output=True,
                         text=True)
    assert bad.returncode == 2 and '--category-ids' in bad.stderr


# ------------------------------ train.py, stop epoch, resume, finetune
@pytest.mark.slow
def test_train_py_toy_finetune_stop_epoch_and_resume(tiny_dfine_cfg, toy_data,
                                                     tmp_path, cli):
    """Epoch 1 fine-tunes from an 80-class checkpoint (class layers
    re-initialised); the run then resumes into epoch 2, where the strong augs
    and multi-scale stop and the best stage-1 checkpoint is reloaded; the
    counters continue from the checkpoint."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(tiny_dfine_cfg)
    cfg.model.bbox_head.num_classes = 80
    coco_ckpt = str(tmp_path / 'coco80.pth')
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, coco_ckpt)

    wd = str(tmp_path / 'wd')
    train = [
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'), tiny_dfine_cfg, '--work-dir', wd
    ]
    out1 = cli(
        train + ['--cfg-options', f'load_from={coco_ckpt}'],
        cwd=str(tmp_path),
        env=ONE_THREAD)
    assert re.search(
        r"ClassHeadAdaptHook: class count differs .*re-initialised \[.*"
        r"bbox_head\.cls_branches\.0\.weight.*"
        r"dn_query_generator\.label_embedding", out1)
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', out1), out1[-3000:]
    assert 'DFINEStopAugHook: epoch' not in out1
    assert osp.isfile(osp.join(wd, 'epoch_1.pth'))

    out2 = cli(
        train + ['--resume', '--cfg-options', 'train_cfg.max_epochs=2'],
        cwd=str(tmp_path),
        env=ONE_THREAD)
    assert 'resumed epoch: 1, iter: 2' in out2, out2[-3000:]
    assert not re.search(r'Epoch\(train\) \[1\]\[', out2)
    assert re.search(r'Epoch\(train\) \[2\]\[2/2\]', out2), out2[-3000:]
    assert re.search(
        r"DFINEStopAugHook: epoch 1 >= stop_epoch 1: removed "
        r"\['RandomPhotometricDistort', 'Expand', 'RandomIoUCrop'\] "
        r"transforms, "
        r"disabled 1 batch multi-scale augment", out2), out2[-3000:]
    assert re.search(
        r'reloaded model, EMA and optimizer from the best stage-1 checkpoint '
        r'.*best_coco_bbox_mAP_epoch_1\.pth', out2), out2[-3000:]
    ckpt = torch.load(
        osp.join(wd, 'epoch_2.pth'), map_location='cpu', weights_only=False)
    assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (2, 4)
    assert int(ckpt['ema_state_dict']['steps']) == 4


# ----------------------------------------------------------------------- DDP
@pytest.mark.slow
def test_two_process_cpu_ddp(toy_data, tmp_path, cli):
    cfg = _write_cfg(tmp_path / 'tiny_ddp.py', toy_data, batch_size=2)
    out = cli([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
        '--master_port',
        str(_free_port()),
        osp.join(ROOT, 'tools',
                 'train.py'), cfg, '--launcher', 'pytorch', '--work-dir',
        str(tmp_path / 'wd')
    ],
              cwd=str(tmp_path),
              env=ONE_THREAD)
    assert 'Distributed training: True' in out
    # 8 images, 2 per process, 2 processes -> 2 iterations per epoch
    losses = re.findall(r'Epoch\(train\) \[1\]\[\d/2\].* loss: ([0-9.]+)', out)
    assert len(losses) == 2 and all(0 < float(v) < 1e3
                                    for v in losses), out[-3000:]
    assert re.search(r'Epoch\(val\) \[1\]\[1/1\].*coco/bbox_mAP',
                     out), out[-3000:]
    assert osp.isfile(tmp_path / 'wd' / 'epoch_1.pth')


# ----------------------------------------------------------------------- mim
@pytest.mark.slow
def test_mim_train_toy_config(tiny_dfine_cfg, tmp_path, cli, mim_bin):
    out = cli([
        mim_bin, 'train', 'mmdetection', tiny_dfine_cfg, '--work-dir',
        str(tmp_path / 'wd')
    ],
              cwd=str(tmp_path),
              env=ONE_THREAD)
    assert 'Training finished successfully' in out
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', out), out[-3000:]
    assert osp.isfile(tmp_path / 'wd' / 'epoch_1.pth')


# ------------------------------------------------------------- benchmarks
def test_toy_train_benchmark_tiny_budget(toy_data, tmp_path, cli):
    out = cli([
        sys.executable,
        osp.join(ROOT, 'tools', 'experiments', 'toy_train.py'), '--iters', '3',
        '--threads', '1', '--data', toy_data, '--work-dir',
        str(tmp_path / 'wd')
    ],
              cwd=str(tmp_path),
              env=ONE_THREAD)
    lines = out.strip().splitlines()
    assert re.fullmatch(r'bbox mAP: \d\.\d{3}  mAP@0\.5: \d\.\d{3}',
                        lines[-1]), lines[-5:]
    assert re.search(r'loss curve .*3 iterations', out)
    assert len(re.findall(r'^  iter +\d+- +\d+  loss +[0-9.]+$', out,
                          re.M)) == 3


def test_train_step_benchmark_runs(tmp_path, cli):
    out = cli([
        sys.executable,
        osp.join(ROOT, 'tools', 'experiments',
                 'train_step.py'), '--iters', '1', '--warmup', '0', '--size',
        '256', '--batch-size', '1', '--threads', '1'
    ],
              cwd=str(tmp_path),
              env=ONE_THREAD)
    assert re.search(r's/iter', out.strip().splitlines()[-1]), out[-2000:]
