#!/usr/bin/env python
"""Cost of the data checks (CheckedCocoDataset + CheckedLoadImageFromFile) per
training iteration.

Builds the toy config twice: without the checks (``CocoDataset`` + MMCV's
``LoadImageFromFile`` with Pillow, what the training configs used before the
checks became their default) and with them (``CheckedCocoDataset`` +
``CheckedLoadImageFromFile(on_error='skip')``, what
``configs/dfine/_base_/datasets/coco.py`` ships). Both read the same
toy set (written by ``tools/make_toy_dataset.py`` into a temporary folder
unless ``--data-root`` is given), with ``num_workers=0`` so that the loading
time is part of the iteration. Measured in one run, alternating the two
variants iteration by iteration (same model, same machine load):

* annotation parsing (dataset build) for each variant;
* the pipeline alone: ``dataset[i]`` over the whole set, ``--rounds`` times;
* a full training iteration (next batch from the dataloader +
  ``model.train_step``), ``--iters`` iterations after ``--warmup``.

``DataSkipReportHook`` works per epoch (it sums counts in
``after_train_epoch``); it adds nothing per iteration and is not timed.
The summary lines give the per-image pipeline and per-iteration ratios (and,
with ``--parse-images N``, the one-off annotation parse of a synthetic COCO
file of N images).

Example::

    python tools/experiments/data_checks_overhead.py --iters 10
    python tools/experiments/data_checks_overhead.py --iters 20 \
        --parse-images 20000
"""
import argparse
import os.path as osp
import statistics
import tempfile
import time

from dfine_mmdet.benchmark.toy_data import make_toy_dataset

PROJECT_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_CONFIG = osp.join(PROJECT_ROOT, 'configs', 'dfine', 'toy',
                      'dfine_hgnetv2_n_toy.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=TOY_CONFIG)
    parser.add_argument(
        '--data-root',
        default=None,
        help='toy set root (default: a fresh one in a '
        'temp dir)')
    parser.add_argument(
        '--num-train',
        type=int,
        default=64,
        help='images of the generated toy set')
    parser.add_argument(
        '--rounds',
        type=int,
        default=3,
        help='passes over the dataset for the pipeline timing')
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument(
        '--parse-images',
        type=int,
        default=0,
        help='also time the annotation parse of a synthetic COCO file with '
        'this many images (7 boxes each, 80 classes; no image is read), '
        'e.g. 20000')
    return parser.parse_args(argv)


def synthetic_coco(path, num_images, boxes_per_image=7, seed=0):
    """A COCO-style file of ``num_images`` 640x480 images with valid boxes
    (what the parse of a large clean dataset costs)."""
    import json
    import random
    rng = random.Random(seed)
    images, anns = [], []
    for i in range(num_images):
        images.append(
            dict(id=i, file_name=f'{i:012d}.jpg', width=640, height=480))
        for _ in range(boxes_per_image):
            w, h = rng.uniform(4, 200), rng.uniform(4, 200)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            anns.append(
                dict(
                    id=len(anns),
                    image_id=i,
                    bbox=[x, y, w, h],
                    area=w * h,
                    iscrowd=0,
                    category_id=rng.randint(1, 80)))
    cats = [dict(id=c, name=f'class_{c}') for c in range(1, 81)]
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)


def time_large_parse(num_images, tmpdir):
    """Seconds to parse a synthetic annotation file, per dataset class."""
    from mmdet.registry import DATASETS
    ann = osp.join(tmpdir, 'synthetic.json')
    synthetic_coco(ann, num_images)
    classes = tuple(f'class_{c}' for c in range(1, 81))
    out = {}
    for _ in range(2):
        for name, typ in (('mmdet', 'CocoDataset'), ('checked',
                                                     'CheckedCocoDataset')):
            t0 = time.perf_counter()
            ds = DATASETS.build(
                dict(
                    type=typ,
                    data_root=tmpdir + '/',
                    ann_file='synthetic.json',
                    data_prefix=dict(img=''),
                    metainfo=dict(classes=classes),
                    filter_cfg=dict(filter_empty_gt=False),
                    pipeline=[],
                    lazy_init=False))
            dt = time.perf_counter() - t0
            assert len(ds) == num_images
            out[name] = min(out.get(name, float('inf')), dt)
    return out


def _with_loader(cfg, dataset_type, loader):
    cfg = cfg.copy()
    ds = cfg.train_dataloader.dataset
    ds.type = dataset_type
    pipeline = [dict(t) for t in ds.pipeline]
    assert 'LoadImageFromFile' in pipeline[0]['type'], pipeline[0]
    pipeline[0] = dict(loader, backend_args=pipeline[0].get('backend_args'))
    ds.pipeline = pipeline
    return cfg


def unchecked(cfg):
    """The config without the data checks (MMDetection's parts)."""
    return _with_loader(
        cfg, 'CocoDataset',
        dict(type='LoadImageFromFile', imdecode_backend='pillow'))


def checked(cfg):
    """The config with the data checks on (docs/reliability.md)."""
    return _with_loader(cfg, 'CheckedCocoDataset',
                        dict(type='CheckedLoadImageFromFile', on_error='skip'))


def main(argv=None):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    MMLogger.get_instance('mmengine', log_level='WARNING')

    from mmdet.registry import DATASETS, MODELS, OPTIM_WRAPPERS

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')

    tmp = None
    data_root = args.data_root
    if data_root is None:
        tmp = tempfile.TemporaryDirectory()
        data_root = osp.join(tmp.name, 'toy')
        make_toy_dataset(
            data_root,
            seed=0,
            num_train=args.num_train,
            num_val=4,
            log=lambda *a: None)
    data_root = data_root.rstrip('/') + '/'
    base = Config.fromfile(args.config)
    base.train_dataloader.dataset.data_root = data_root
    base.train_dataloader.num_workers = 0
    base.train_dataloader.persistent_workers = False
    cfgs = {'mmdet': unchecked(base), 'checked': checked(base)}

    # each built 3 times, alternating; the fastest build counts (the first
    # build also pays one-off imports)
    datasets, parse_s = {}, {k: float('inf') for k in cfgs}
    for _ in range(3):
        for name, cfg in cfgs.items():
            t0 = time.perf_counter()
            datasets[name] = DATASETS.build(cfg.train_dataloader.dataset)
            datasets[name].full_init()
            parse_s[name] = min(parse_s[name], time.perf_counter() - t0)
    n = len(datasets['mmdet'])
    assert n == len(datasets['checked']), 'the two variants see other images'

    per_sample = {k: [] for k in cfgs}
    for _ in range(args.rounds):
        for i in range(n):
            for name in cfgs:
                t0 = time.perf_counter()
                datasets[name][i]
                per_sample[name].append(time.perf_counter() - t0)

    torch.manual_seed(0)
    model = MODELS.build(base.model)
    model.init_weights()
    model.train()
    optim = OPTIM_WRAPPERS.build(
        dict(
            type='OptimWrapper',
            optimizer=torch.optim.AdamW(model.parameters(), lr=1e-4)))
    loaders = {
        k: Runner.build_dataloader(c.train_dataloader, seed=0)
        for k, c in cfgs.items()
    }
    iters = {k: iter(v) for k, v in loaders.items()}
    step = {k: [] for k in cfgs}
    for it in range(args.warmup + args.iters):
        for name in cfgs:
            t0 = time.perf_counter()
            try:
                batch = next(iters[name])
            except StopIteration:
                iters[name] = iter(loaders[name])
                batch = next(iters[name])
            model.train_step(batch, optim)
            if it >= args.warmup:
                step[name].append(time.perf_counter() - t0)

    bs = base.train_dataloader.batch_size
    print(f'data checks overhead: {osp.basename(args.config)}, {n} images, '
          f'batch {bs}, threads {torch.get_num_threads()}')
    for name in cfgs:
        print(f'  {name:8s} annotation parse {parse_s[name] * 1e3:7.1f} ms  '
              f'pipeline {statistics.median(per_sample[name]) * 1e3:6.2f} '
              f'ms/image (median of {len(per_sample[name])})  iteration '
              f'{statistics.median(step[name]):.3f} s (median of '
              f'{len(step[name])})')
    print(f'  (annotation parse: fastest of 3 builds; {len(cfgs)} variants '
          'alternate in every timed loop)')
    pipe = (
        statistics.median(per_sample['checked']) /
        statistics.median(per_sample['mmdet']))
    ratio = statistics.median(step['checked']) / statistics.median(
        step['mmdet'])
    print(f'summary: pipeline checked/mmdet {pipe:.3f}x per image; '
          f'training iteration checked/mmdet {ratio:.3f}x '
          f'({statistics.median(step["checked"]):.3f} / '
          f'{statistics.median(step["mmdet"]):.3f} s)')
    if args.parse_images:
        with tempfile.TemporaryDirectory() as d:
            t = time_large_parse(args.parse_images, d)
        print(f'summary: annotation parse of {args.parse_images} synthetic '
              f'images x 7 boxes (fastest of 2): checked/mmdet '
              f'{t["checked"] / t["mmdet"]:.3f}x ({t["checked"]:.2f} / '
              f'{t["mmdet"]:.2f} s, once per run)')
    if tmp is not None:
        tmp.cleanup()


if __name__ == '__main__':
    main()
