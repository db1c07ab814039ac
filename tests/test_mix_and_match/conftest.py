"""Fixtures of the mix-and-match tests: the toy set and tiny configs
(see ``mixed_fixtures.py``)."""
import os.path as osp
import subprocess
import sys

import pytest

from mixed_fixtures import MIXED_DIR, ROOT, TINY_BACKBONES, TINY_CONFIG


@pytest.fixture(scope='session')
def toy_coco(tmp_path_factory):
    """8 train / 4 val images from ``tools/make_toy_dataset.py`` (3 classes)."""
    out = str(tmp_path_factory.mktemp('toy_coco') / 'toy')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_toy_dataset.py'), '--out', out,
                    '--seed', '0', '--num-train', '8', '--num-val', '4'],
                   check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope='session')
def tiny_config(toy_coco, tmp_path_factory):
    """``tiny_config(name, in_channels=None) -> path`` of the tiny config."""
    folder = tmp_path_factory.mktemp('tiny_mixed')

    def make(name, in_channels=None):
        backbone, channels = TINY_BACKBONES[name]
        base = osp.join(MIXED_DIR, name)
        assert osp.isfile(base), f'{base} is missing'
        path = folder / f'tiny_{name}'
        path.write_text(TINY_CONFIG.format(
            name=name, base=base, data_root=toy_coco + '/', backbone=backbone,
            in_channels=in_channels or channels))
        return str(path)

    return make
