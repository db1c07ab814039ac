"""Shared pytest fixtures.

The parity fixtures produced by the official D-FINE implementation live in
``../shared/parity`` beside the project root (CI has them; an end user's clone
does not).  Tests that need them use the ``parity_dir`` fixture, which skips
with a clear reason when the folder is absent.  ``DFINE_SHARED_DIR`` overrides
the location.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest

# Two-core CI machines: tests that spawn worker processes (DDP, mim, tools)
# oversubscribe the CPU badly when every process runs several OpenMP threads
# (measured ~18x slower steps).  One thread per process keeps them fast; a
# user's own setting wins.
os.environ.setdefault('OMP_NUM_THREADS', '1')

PROJECT_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DIR = os.environ.get('DFINE_SHARED_DIR',
                            osp.join(osp.dirname(PROJECT_ROOT), 'shared'))
PARITY_DIR = osp.join(SHARED_DIR, 'parity')


def _skip_reason():
    return (f'official D-FINE parity fixtures not found at {PARITY_DIR} '
            '(they live in ../shared/parity beside the project root; set '
            'DFINE_SHARED_DIR to point elsewhere)')


@pytest.fixture(scope='session')
def parity_dir():
    """Path of ``../shared/parity``; skips the test when it is absent."""
    if not osp.isdir(PARITY_DIR):
        pytest.skip(_skip_reason())
    if PARITY_DIR not in sys.path:
        # gives access to official_random_weights.py (numpy + torch only)
        sys.path.insert(0, PARITY_DIR)
    return PARITY_DIR


@pytest.fixture(scope='session')
def project_root():
    return PROJECT_ROOT


@pytest.fixture(scope='session')
def toy_coco(tmp_path_factory):
    """8 train / 4 val images from ``tools/make_toy_dataset.py`` (3 classes,
    seed 0), written once per session; tests that damage it copy it first."""
    out = str(tmp_path_factory.mktemp('toy_coco') / 'toy')
    subprocess.run([
        sys.executable,
        osp.join(PROJECT_ROOT, 'tools', 'make_toy_dataset.py'), '--out', out,
        '--seed', '0', '--num-train', '8', '--num-val', '4'
    ],
                   check=True,
                   capture_output=True,
                   timeout=300)
    return out
