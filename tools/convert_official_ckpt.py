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
``mmdet.apis.init_detector(config, DST)``.
"""
import argparse
import os
import os.path as osp
import pickle
import sys
from typing import Optional

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:  # allow running from a source checkout
    sys.path.insert(0, REPO_ROOT)

from dfine_mmdet.models.detectors.official_checkpoint import (  # noqa: E402
    CheckpointMismatchError, compare_with_model, convert_state_dict,
    detect_variant, extract_state_dict)


def default_config(info: dict, deim: bool = False) -> Optional[str]:
    """Config of this repo matching a detected variant (or None);
    ``deim``: the DEIM-D-FINE COCO config."""
    v = info['variant']
    if v is None:
        return None
    if deim:
        path = osp.join(REPO_ROOT, 'configs', 'deim_dfine',
                        f'deim_hgnetv2_{v}_coco.py')
        return path if info['num_classes'] == 80 and osp.isfile(path) \
            else None
    if info['num_classes'] == 366:
        path = osp.join(REPO_ROOT, 'configs', 'dfine', 'objects365',
                        f'dfine_hgnetv2_{v}_obj365.py')
    elif info['num_classes'] == 80:
        path = osp.join(REPO_ROOT, 'configs', 'dfine',
                        f'dfine_hgnetv2_{v}_coco.py')
    else:
        return None
    return path if osp.isfile(path) else None


def build_model_state(config: str) -> dict:
    """``state_dict()`` of the model described by ``config`` (no weights are
    loaded or downloaded)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401  (registers the modules)
    from mmdet.registry import MODELS
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    return model.state_dict()


def dataset_meta(num_classes: int) -> Optional[dict]:
    """Class names for the checkpoint meta (used by ``init_detector``)."""
    if num_classes == 80:
        from mmdet.datasets import CocoDataset
        return dict(classes=tuple(CocoDataset.METAINFO['classes']))
    if num_classes == 366:
        # official Objects365 models: label = raw category id, row 0 unused
        from mmdet.datasets import Objects365V2Dataset
        return dict(classes=('__unused__', ) +
                    tuple(Objects365V2Dataset.METAINFO['classes']))
    return None


def convert(src: str,
            dst: str,
            config: Optional[str] = None,
            verbose: bool = True,
            deim: bool = False) -> dict:
    """Convert ``src`` to ``dst``; returns the detected variant info.

    Raises:
        CheckpointMismatchError: when the weights do not fit ``config``.
    """
    log = print if verbose else (lambda *a, **k: None)
    ckpt = torch.load(src, map_location='cpu', weights_only=False)
    official, source = extract_state_dict(ckpt)
    info = detect_variant(official)
    variant = info['variant'].upper() if info['variant'] else 'unknown'
    log(f'loaded {src}: {len(official)} entries from {source!r}')
    log(f'detected D-FINE-{variant}: {info["num_classes"]} classes, '
        f'{info["num_decoder_layers"]} decoder layers, decoder width '
        f'{info["embed_dims"]}, reg_scale {info["reg_scale"]:g}')
    state_dict = convert_state_dict(official)

    if config is None:
        config = default_config(info, deim=deim)
        if config is not None:
            log(f'verifying against {osp.relpath(config, os.getcwd())}')
    if config is not None:
        problems = compare_with_model(state_dict, build_model_state(config))
        if problems:
            raise CheckpointMismatchError(
                f'{src} (D-FINE-{variant}, {info["num_classes"]} classes) '
                f'does not match {config}:\n{problems}')
        log(f'all {len(state_dict)} entries match {config}')
    else:
        log('no config to verify against (pass --config)')

    meta = dict(
        converted_from=osp.basename(src),
        official_source=source,
        dfine_variant=info['variant'],
        num_classes=info['num_classes'],
        config=osp.basename(config) if config else None)
    ds_meta = None
    try:
        ds_meta = dataset_meta(info['num_classes'])
    except ImportError:  # mmdet not installed: names are optional
        pass
    if ds_meta is not None:
        meta['dataset_meta'] = ds_meta
    out_dir = osp.dirname(osp.abspath(dst))
    os.makedirs(out_dir, exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=meta), dst)
    log(f'wrote {len(state_dict)} entries to {dst}')
    return info


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
        print(f'error: {args.src} is not an official D-FINE checkpoint: '
              f'{msg}', file=sys.stderr)
        return 1
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        # torch.load on a truncated / non-torch file
        first = str(err).strip().splitlines()[0] if str(err).strip() else \
            type(err).__name__
        print(f'error: cannot read {args.src} as a PyTorch checkpoint '
              f'(truncated or another format?): {first}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
