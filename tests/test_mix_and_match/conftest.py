"""Fixtures of the mix-and-match tests: tiny configs (see
``mixed_fixtures.py``) on the session toy set (``toy_coco``,
tests/conftest.py)."""
import os.path as osp

import pytest
from mixed_fixtures import MIXED_DIR, TINY_BACKBONES, TINY_CONFIG


@pytest.fixture(scope='session')
def tiny_config(toy_coco, tmp_path_factory):
    """``tiny_config(name, in_channels=None) -> path`` of the tiny config."""
    folder = tmp_path_factory.mktemp('tiny_mixed')

    def make(name, in_channels=None):
        backbone, channels = TINY_BACKBONES[name]
        base = osp.join(MIXED_DIR, name)
        assert osp.isfile(base), f'{base} is missing'
        path = folder / f'tiny_{name}'
        path.write_text(
            TINY_CONFIG.format(
                name=name,
                base=base,
                data_root=toy_coco + '/',
                backbone=backbone,
                in_channels=in_channels or channels))
        return str(path)

    return make
