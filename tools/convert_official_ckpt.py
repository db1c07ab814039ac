"""Convert an official D-FINE checkpoint (Peterande/D-FINE) to an MMDetection
checkpoint of this plugin.

Usage::

    python tools/convert_official_ckpt.py dfine_l_coco.pth dfine_l_mmdet.pth
    python tools/convert_official_ckpt.py last.pth out.pth \
        --config configs/dfine/dfine_hgnetv2_l_coco.py
    python tools/convert_official_ckpt.py deim_dfine_hgnetv2_s_coco.pth \
        deim_s_mmdet.pth --deim

DEIM's released D-FINE checkpoints (ShihuaHuang95/DEIM) have the official
D-FINE layout and convert the same way; ``--deim`` verifies them against
``configs/deim_dfine/deim_hgnetv2_{v}_coco.py`` (SiLU decoder, unfrozen BN).

The source may be a released file (``{'model': ...}``) or a training
checkpoint (``ema.module`` is preferred, as the official loaders do).  The
variant (N/S/M/L/X) and class count (80 COCO, 366 Objects365) are detected
from tensor shapes.  Without ``--config`` the matching config of this repo is
used to verify the result (``dfine_hgnetv2_{v}_coco.py`` or
``objects365/dfine_hgnetv2_{v}_obj365.py``).  A checkpoint that does not fit
the config is refused with the first mismatching keys named.  The output
``{'state_dict': ..., 'meta': ...}`` loads strictly with
``mmdet.apis.init_detector(config, DST)``. The conversion itself is
:mod:`dfine_mmdet.checkpoint.official`.
"""
import argparse
import os.path as osp
import pickle
import sys

from dfine_mmdet.checkpoint import CheckpointMismatchError
from dfine_mmdet.checkpoint.official import convert_checkpoint


def convert(src: str,
            dst: str,
            config=None,
            verbose: bool = True,
            deim: bool = False) -> dict:
    """:func:`dfine_mmdet.checkpoint.official.convert_checkpoint`, printing
    its progress when ``verbose``; returns the detected variant info."""
    return convert_checkpoint(
        src,
        dst,
        config,
        log=print if verbose else (lambda *a, **k: None),
        deim=deim)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an official D-FINE checkpoint to MMDetection')
    parser.add_argument('src', help='official .pth (model or training ckpt)')
    parser.add_argument('dst', help='output MMDetection checkpoint')
    parser.add_argument(
        '--config',
        default=None,
        help='config the weights must fit (default: the matching config '
        'of this repo)')
    parser.add_argument(
        '--deim',
        action='store_true',
        help='a DEIM checkpoint (ShihuaHuang95/DEIM): verify against '
        'configs/deim_dfine/deim_hgnetv2_{v}_coco.py')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.src):
        print(f'error: {args.src}: no such file', file=sys.stderr)
        return 1
    try:
        convert(args.src, args.dst, args.config, deim=args.deim)
    except CheckpointMismatchError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    except KeyError as err:
        # a state dict without the keys of an official D-FINE checkpoint
        msg = err.args[0] if err.args else err
        print(
            f'error: {args.src} is not an official D-FINE checkpoint: '
            f'{msg}',
            file=sys.stderr)
        return 1
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        # torch.load on a truncated / non-torch file
        first = str(err).strip().splitlines()[0] if str(err).strip() else \
            type(err).__name__
        print(
            f'error: cannot read {args.src} as a PyTorch checkpoint '
            f'(truncated or another format?): {first}',
            file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
