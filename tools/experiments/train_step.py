#!/usr/bin/env python
"""CPU time of one D-FINE training iteration (forward, criterion + matching,
backward, AdamW).

Builds a COCO config (default D-FINE-N, 80 classes), feeds a fixed synthetic
batch (random images, ``--gt`` random boxes per image, default 7 ~ the COCO
mean) through ``model.train_step`` with the recipe's optimizer wrapper
(``DFINEOptimWrapperConstructor``, grad clip 0.1; plain ``OptimWrapper`` since
AMP needs CUDA), and reports per-iteration wall time after ``--warmup``
iterations, split into data preprocessing + forward + loss (incl. Hungarian /
GO-LSD matching) and backward + step.  The last line is the summary.

Example::

    python tools/experiments/train_step.py    # N, batch 4, 640x640
    python tools/experiments/train_step.py --threads 2 --iters 5
"""
import argparse
import os.path as osp
import statistics
import time

PROJECT_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--config',
        default=osp.join(PROJECT_ROOT, 'configs', 'dfine',
                         'dfine_hgnetv2_n_coco.py'))
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument(
        '--size', type=int, default=640, help='square input size')
    parser.add_argument('--gt', type=int, default=7, help='GT boxes per image')
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch.set_num_threads (default 1; with 2 threads on '
        'a 2-core machine that is also busy with other jobs a '
        'step was measured ~18x slower)')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def make_batch(batch_size, size, num_gt, num_classes, generator):
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(
            torch.randint(
                0,
                256, (3, size, size),
                dtype=torch.uint8,
                generator=generator))
        xy = torch.rand(num_gt, 2, generator=generator) * size * 0.7
        wh = torch.rand(num_gt, 2, generator=generator) * size * 0.3 + 4
        s = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], dim=1),
            labels=torch.randint(
                0, num_classes, (num_gt, ), generator=generator))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def main(argv=None):
    args = parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    MMLogger.get_instance(
        'mmengine', log_level='WARNING')  # quiet init_weights

    from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(args.config)
    # random init: the timing does not depend on the ImageNet-pretrained file
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(args.seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    ow = cfg.optim_wrapper.copy()
    ow['type'] = 'OptimWrapper'
    optim = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(
            type=ow.pop('constructor'),
            optim_wrapper_cfg=ow,
            paramwise_cfg=ow.pop('paramwise_cfg', None)))(
                model)
    num_classes = cfg.model.bbox_head.num_classes
    data = make_batch(args.batch_size, args.size, args.gt, num_classes,
                      torch.Generator().manual_seed(args.seed))
    name = osp.splitext(osp.basename(args.config))[0]
    print(
        f'train_step: {name}, batch {args.batch_size}, '
        f'{args.size}x{args.size}, {args.gt} GT/image, {num_classes} classes, '
        f'threads {torch.get_num_threads()}',
        flush=True)

    fwd, bwd, total = [], [], []
    for it in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        with optim.optim_context(model):
            batch = model.data_preprocessor(data, True)
            losses = model._run_forward(batch, mode='loss')
        loss, _ = model.parse_losses(losses)
        t1 = time.perf_counter()
        optim.update_params(loss)
        t2 = time.perf_counter()
        tag = 'warmup' if it < args.warmup else 'iter'
        print(
            f'  {tag} {it + 1}: fwd+loss {t1 - t0:.3f} s  bwd+step '
            f'{t2 - t1:.3f} s  total {t2 - t0:.3f} s  (loss '
            f'{float(loss.detach()):.2f})',
            flush=True)
        if it >= args.warmup:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            total.append(t2 - t0)
    print(f'{name} batch {args.batch_size} @ {args.size}: median '
          f'{statistics.median(total):.3f} s/iter (fwd+loss '
          f'{statistics.median(fwd):.3f}, bwd+step '
          f'{statistics.median(bwd):.3f}; mean {statistics.mean(total):.3f}) '
          f'over {len(total)} iterations')


if __name__ == '__main__':
    main()
