"""``tools/gpu_check.py`` on the CPU at a tiny size (the command of
docs/profiling.md, so the GPU check cannot rot), and the agreement check's
ability to fail."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'gpu_check.py')


def _run(*args, timeout=900):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def _rows(stdout):
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 5 and cells[0] in ('N', 'S'):
            rows[(cells[0], cells[1])] = cells
    return rows


def test_gpu_check_cpu_tiny():
    proc = _run('--device', 'cpu', '--tiny', '--variants', 'n', '--threads',
                '1')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _rows(proc.stdout)
    expected = ['train/fp32', 'train/fp16', 'train/bf16', 'agree/fp16',
                'agree/bf16', 'latency/eager/b1', 'latency/eager/b2',
                'latency/compiled/b1', 'latency/compiled/b2']
    assert sorted(c for _, c in rows) == sorted(expected), proc.stdout
    for check in expected:
        assert rows[('N', check)][2] == 'PASS', rows[('N', check)]
    assert 'it/s' in rows[('N', 'train/bf16')][3]
    assert 'fp32 and finite' in rows[('N', 'train/fp16')][4]


def test_agreement_check_fails_on_a_wrong_reference():
    """The agreement row is a real comparison: a reference from other
    weights is reported as FAIL."""
    from dfine_mmdet.benchmark.gpu_check import check_agreement, parity_model
    cfg = osp.join(ROOT, 'configs', 'dfine', 'dfine_hgnetv2_n_coco.py')
    opts = dict(model=dict(num_queries=10, eval_spatial_size=(64, 64)))
    model, images, _ = parity_model(cfg, None, 'n', 64, opts)
    res, ref = check_agreement(model, images, torch.device('cpu'), 'bf16')
    assert res['status'] == 'PASS', res
    wrong = (ref[0] + 3.0, ref[1].flip(-1))
    res, _ = check_agreement(model, images, torch.device('cpu'), 'bf16',
                             wrong)
    assert res['status'] == 'FAIL', res


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    proc = _run('--device', 'cuda', timeout=300)
    assert proc.returncode != 0
    assert 'torch.cuda.is_available() is False' in proc.stderr
