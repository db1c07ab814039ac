#!/usr/bin/env python
"""Write a small, deterministic COCO-format toy detection set.

For smoke tests and the toy benchmarks.

Layout written under ``--out``: ``train/*.png``, ``val/*.png``,
``annotations/instances_{train,val}.json``; three classes (``square``,
``circle``, ``triangle``); see :mod:`dfine_mmdet.benchmark.toy_data`.

Example::

    python tools/make_toy_dataset.py --out data/toy --seed 0
"""
import argparse

from dfine_mmdet.benchmark.toy_data import make_toy_dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--num-train', type=int, default=256)
    parser.add_argument('--num-val', type=int, default=64)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    make_toy_dataset(args.out, args.seed, args.num_train, args.num_val)


if __name__ == '__main__':
    main()
