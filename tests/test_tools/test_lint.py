"""The whole tree passes MMDetection's linters (settings in setup.cfg):
flake8, ``isort --check-only`` and ``yapf --diff``; CI fails on a violation.

Fix a failure with::

    python -m yapf -i -r dfine_mmdet tools tests configs setup.py
    python -m isort dfine_mmdet tools tests configs setup.py
    python -m flake8 dfine_mmdet tools tests configs setup.py  # then by hand

(``bash tools/setup_env.sh`` installs the pinned linters;
``pre-commit install`` runs them on every commit.)
"""
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: what is linted: the package, the tools, the tests, the configs
TARGETS = ['dfine_mmdet', 'tools', 'tests', 'configs', 'setup.py']


def _run(*args):
    proc = subprocess.run([sys.executable, '-m', *args, *TARGETS],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    'tool', [
        ('flake8', ),
        ('isort', '--check-only', '--diff'),
        ('yapf', '--diff', '--recursive', '--parallel'),
    ],
    ids=lambda t: t[0])
def test_lint(tool):
    rc, out = _run(*tool)
    assert 'No module named' not in out, (
        f'{tool[0]} is not installed: run bash tools/setup_env.sh\n{out}')
    assert rc == 0, f'{" ".join(tool)} found violations:\n{out[-6000:]}'
