"""Fixtures for the reliability tests: a fresh copy of the session toy set
(``toy_coco``, tests/conftest.py) per test that damages it, and the tiny
64x64 D-FINE-N config of ``tests/test_tools/conftest.py`` (loaded from
there, not copied)."""
import importlib.util
import os.path as osp
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tools_conftest():
    spec = importlib.util.spec_from_file_location(
        'tools_conftest', osp.join(ROOT, 'tests', 'test_tools', 'conftest.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TOOLS = _tools_conftest()


@pytest.fixture
def toy_copy(toy_coco, tmp_path):
    """A copy of the toy set the test may damage; returns its root + '/'."""
    dst = str(tmp_path / 'toy')
    shutil.copytree(toy_coco, dst)
    return dst + '/'


def tiny_config_text(data_root, extra=''):
    """The tiny config text (tests/test_tools/conftest.py) + ``extra``."""
    return TOOLS.TINY_CONFIG.format(
        toy_cfg=TOOLS.TOY_CONFIG, data_root=data_root) + extra


def run_tool(args, cwd=ROOT, timeout=600, env=None):
    """Run ``python tools/<args>``; returns (returncode, stdout+stderr)."""
    import os
    proc = subprocess.run(
        [sys.executable] + list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})))
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope='session')
def rel():
    """Helpers: ``rel.config_text(data_root, extra)``, ``rel.run(args)``."""

    class _Rel:
        config_text = staticmethod(tiny_config_text)
        run = staticmethod(run_tool)
        root = ROOT

    return _Rel
