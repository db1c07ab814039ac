#!/usr/bin/env python
"""Write a small, deterministic COCO-format toy detection set.

For smoke tests, the toy benchmarks and the worked example of
docs/custom_dataset.md.  Layout written under ``--out``: ``train/*.png``,
``val/*.png``, ``annotations/instances_{train,val}.json``; three classes
(``square``, ``circle``, ``triangle``) with category ids 1..3, or the ids given
by ``--category-ids`` (one per class, in that order, which is also the order of
the json's ``categories`` list); see :mod:`dfine_mmdet.benchmark.toy_data`.

Example::

    python tools/make_toy_dataset.py --out data/toy --seed 0
    python tools/make_toy_dataset.py --out data/shapes --category-ids 40 7 23
"""
import argparse

from dfine_mmdet.benchmark.toy_data import CLASSES, make_toy_dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--num-train', type=int, default=256)
    parser.add_argument('--num-val', type=int, default=64)
    parser.add_argument(
        '--category-ids',
        type=int,
        nargs=len(CLASSES),
        default=[1, 2, 3],
        metavar='ID',
        help='COCO category id of ' + ', '.join(CLASSES) +
        ' (in this order, which is also the order of the json categories '
        'list); default 1 2 3')
    args = parser.parse_args(argv)
    if len(set(args.category_ids)) != len(CLASSES) or min(
            args.category_ids) < 0:
        parser.error(f'--category-ids: {len(CLASSES)} distinct ids >= 0 '
                     f'expected, got {args.category_ids}')
    return args


def main(argv=None):
    args = parse_args(argv)
    make_toy_dataset(
        args.out,
        args.seed,
        args.num_train,
        args.num_val,
        cat_ids=tuple(args.category_ids))


if __name__ == '__main__':
    main()
