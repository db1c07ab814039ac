"""Smoke test of tools/experiments/deim_toy.py (the command of docs/deim.md)
at a tiny size: both parts run and print their numbers and ratios."""
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.slow
def test_deim_toy_benchmark_tiny(tmp_path):
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'experiments',
                 'deim_toy.py'), '--epochs', '2', '--seeds', '0', '1',
        '--toy-images', '8', '4', '--img-size', '64', '--batch-size', '4',
        '--compare-minutes', '0.02', '--jobs', '2', '--work-dir',
        str(tmp_path)
    ]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env=dict(__import__('os').environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    runs = re.findall(r'^  (D-FINE|DEIM) +seed (\d): (\d+) iters', out, re.M)
    assert sorted((r, s) for r, s, _ in runs) == [('D-FINE', '0'),
                                                  ('D-FINE', '1'),
                                                  ('DEIM', '0'), ('DEIM', '1')]
    # equal iterations: 2 epochs of 8 images at batch 4
    assert {int(n) for _, _, n in runs} == {4}
    # the two recipes of seed 1 run in the other order
    assert [r for r, s, _ in runs if s == '1'] == ['DEIM', 'D-FINE']
    assert re.search(r'policy epochs \[1, 1, 2\]', out)
    assert 'DEIM-D-FINE-N: toy mAP' in out and 'RTMDet-tiny  : toy mAP' in out
    last = out.strip().splitlines()[-1]
    assert last.startswith('(a) DEIM/D-FINE toy mAP at equal iterations:')
    assert '(b) DEIM-D-FINE-N/RTMDet-tiny at equal CPU time' in last
