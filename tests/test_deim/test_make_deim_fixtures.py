"""tools/make_deim_fixtures.py (the command of docs/deim.md) reproduces the
committed fixtures from DEIM's code.

Needs a DEIM checkout at a9aa4adce6b5 in ``$DEIM_ROOT``
(``git --git-dir=<mirror>
archive a9aa4adce6b5 | tar -x -C DIR``); skipped otherwise.  The MAL cases are
regenerated and compared with ``tests/data/deim/deim_mal_cases.pt``, the
criterion terms with ``deim_{s,x}_criterion_case2.pt`` and the forward
fixture of N with ``deim_n_coco.npz``.
"""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'make_deim_fixtures.py')
DATA = osp.join(ROOT, 'tests', 'data', 'deim')


def test_help_runs():
    proc = subprocess.run([sys.executable, TOOL, '--help'],
                          capture_output=True,
                          text=True)
    assert proc.returncode == 0 and 'forward --variant v' in proc.stdout


@pytest.fixture
def deim_root():
    root = os.environ.get('DEIM_ROOT')
    if not root or not osp.isfile(
            osp.join(root, 'engine', 'deim', 'deim_criterion.py')):
        pytest.skip('DEIM_ROOT does not point at a DEIM checkout '
                    '(ShihuaHuang95/DEIM at a9aa4adce6b5)')
    return root


def test_regenerates_mal_and_forward_fixtures(deim_root, parity_dir, tmp_path):
    base = [
        sys.executable, TOOL, '--deim-root', deim_root, '--parity-dir',
        parity_dir, '--out',
        str(tmp_path)
    ]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for extra in (['mal'], ['criterion'], ['forward', '--variant', 'n']):
        proc = subprocess.run(
            base + extra, capture_output=True, text=True, env=env, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
    new = torch.load(tmp_path / 'deim_mal_cases.pt', weights_only=True)
    old = torch.load(osp.join(DATA, 'deim_mal_cases.pt'), weights_only=True)
    for a, b in zip(new['cases'], old['cases']):
        assert torch.equal(a['pred_logits'], b['pred_logits'])
        torch.testing.assert_close(
            a['loss_mal'], b['loss_mal'], rtol=1e-6, atol=0)
        torch.testing.assert_close(
            a['grad_pred_logits'], b['grad_pred_logits'], rtol=1e-5, atol=1e-9)
    for name in ('deim_s_criterion_case2.pt', 'deim_x_criterion_case2.pt'):
        a = torch.load(tmp_path / name, weights_only=True)['losses']
        b = torch.load(osp.join(DATA, name), weights_only=True)['losses']
        assert list(a) == list(b)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    a = np.load(tmp_path / 'deim_n_coco.npz')
    b = np.load(osp.join(DATA, 'deim_n_coco.npz'))
    assert int(a['meta/weight_seed']) == int(b['meta/weight_seed'])
    np.testing.assert_allclose(
        a['out/pred_logits'], b['out/pred_logits'], atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        a['out/pred_boxes'], b['out/pred_boxes'], atol=1e-5, rtol=0)
