"""tools/benchmark/latency.py: parameter count helper and backend table."""
import importlib.util
import os.path as osp

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load():
    spec = importlib.util.spec_from_file_location(
        'dfine_latency', osp.join(ROOT, 'tools', 'benchmark', 'latency.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_param_count_and_eager_backend():
    latency = _load()
    model = latency.build_model('n')
    # official count (spec 1.1) incl. the two W(n) scalars
    assert latency.count_params(model) == latency.OFFICIAL_PARAMS['n']
    assert 'torch-eager' in latency.BACKENDS

    class Args:
        warmup, runs = 0, 2

    times = latency.BACKENDS['torch-eager'](model, torch.rand(1, 3, 320, 320),
                                            Args)
    assert len(times) == 2 and all(t > 0 for t in times)


def test_command_line_prints_counts_and_ratio(cli):
    """README: ``python tools/benchmark/latency.py`` (shortened: N only, one
    timed run at 320x320)."""
    import re
    import sys
    out = cli([sys.executable, 'tools/benchmark/latency.py', '--variants', 'n',
               '--runs', '1', '--warmup', '0', '--size', '320'], cwd=ROOT)
    for v in 'NSMLX':
        assert re.search(rf'^{v}\s+[\d,]+\s+[\d,]+\s+yes$', out, re.M), out
    assert 'eager/ort' in out
    assert re.search(r'^N\s+[\d.]+\s+[\d.]+\s+[\d.]+x$', out, re.M), out
