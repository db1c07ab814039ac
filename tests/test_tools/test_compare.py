"""tools/benchmark/compare.py: one plugin model and one MMDetection model in one run."""
import csv
import importlib.util
import json
import os.path as osp
import re
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RTMDET = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'


def _load():
    spec = importlib.util.spec_from_file_location(
        'dfine_compare', osp.join(ROOT, 'tools', 'benchmark', 'compare.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_compare_two_models_table_json_csv_png(tiny_config, cli, tmp_path):
    """README: ``python tools/benchmark/compare.py CFG ... --out-dir DIR``
    (shortened: the tiny D-FINE-N toy config and RTMDet-tiny at 64x64, 1 thread,
    2 timed runs)."""
    out_dir = tmp_path / 'cmp'
    out = cli([sys.executable, 'tools/benchmark/compare.py', f'D-FINE-tiny={tiny_config}',
               f'RTMDet-tiny={RTMDET}', '--size', '64', '--threads', '1', '--warmup', '1',
               '--runs', '2', '--timeout', '600', '--out-dir', str(out_dir)], cwd=ROOT)
    for name in ('compare.md', 'compare.json', 'compare.csv', 'compare.png'):
        assert (out_dir / name).is_file(), f'{name} missing:\n{out[-3000:]}'
    data = json.loads((out_dir / 'compare.json').read_text())
    models = data['models']
    assert [m['label'] for m in models] == ['D-FINE-tiny', 'RTMDet-tiny']
    assert data['meta']['size'] == 64 and data['meta']['threads'] == 1

    compare = _load()
    for m, cfg in zip(models, [tiny_config, RTMDET]):  # lengths checked above
        assert m['status'] == 'ok', m
        assert not m.get('errors'), m['errors']
        # params are those of the built model (independent build here)
        model, _ = compare.build_model(compare.resolve_config(cfg), 64)
        assert m['params'] == sum(p.numel() for p in model.parameters())
        assert m['gflops'] > 0
        for backend in ('eager', 'ort'):
            times = m[backend]['times_ms']
            assert len(times) == 2 and all(t > 0 for t in times), m[backend]
            assert m[backend]['p10_ms'] <= m[backend]['median_ms'] <= m[backend]['p90_ms']
    # deformable attention of D-FINE is counted (grid_sample), RTMDet has none
    assert models[0]['grid_sampler_gflops'] > 0
    assert models[1]['grid_sampler_gflops'] == 0
    assert 'grid_sampler' not in models[0]['flops_uncounted_ops']

    table = (out_dir / 'compare.md').read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith('| ') and '---' not in ln]
    assert rows[0].startswith('| model | params (M) | GFLOPs | eager (ms) | ORT (ms)')
    assert [r.split('|')[1].strip() for r in rows[1:]] == ['D-FINE-tiny', 'RTMDet-tiny']
    assert f'{models[1]["params"] / 1e6:.2f}' in rows[2]
    assert table in out  # printed on stdout too
    with open(out_dir / 'compare.csv') as f:
        csv_rows = list(csv.DictReader(f))
    assert [r['label'] for r in csv_rows] == ['D-FINE-tiny', 'RTMDet-tiny']
    assert int(csv_rows[1]['params']) == models[1]['params']
    assert (out_dir / 'compare.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_failing_model_gets_a_row_not_a_crash(tmp_path, cli):
    """A config that cannot build (unknown model type) and a model cut by the
    per-model timeout both end as rows with the reason; the run still writes
    every output and keeps the order."""
    bad = tmp_path / 'bad.py'
    bad.write_text("model = dict(type='NoSuchDetector')\n")
    out_dir = tmp_path / 'cmp'
    cli([sys.executable, 'tools/benchmark/compare.py', f'bad={bad}', '--size', '64',
         '--threads', '1', '--measure', 'eager', '--out-dir', str(out_dir)], cwd=ROOT, timeout=300)
    data = json.loads((out_dir / 'compare.json').read_text())
    assert [m['label'] for m in data['models']] == ['bad']
    assert re.match(r'failed: KeyError: .*NoSuchDetector', data['models'][0]['status']), data
    assert '| bad |' in (out_dir / 'compare.md').read_text()

    cli([sys.executable, 'tools/benchmark/compare.py', f'first={RTMDET}', f'second={RTMDET}',
         '--size', '64', '--threads', '1', '--timeout', '0.5', '--measure', 'eager',
         '--out-dir', str(out_dir)], cwd=ROOT, timeout=300)
    data = json.loads((out_dir / 'compare.json').read_text())
    assert [(m['label'], m['status']) for m in data['models']] == [
        ('first', 'timeout after 0.5 s'), ('second', 'timeout after 0.5 s')]
    table = (out_dir / 'compare.md').read_text()
    assert '| first |' in table and 'timeout after 0.5 s' in table
    assert (out_dir / 'compare.png').is_file()


def test_grid_sampler_flop_handle_counts_bilinear_taps():
    """4 multiply-adds per output element of a bilinear grid_sample: ``F.grid_sample``
    of a [2, 3, 8, 8] map at a [2, 5, 7, 2] grid -> 4 * 2*3*5*7."""
    sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmark'))
    try:
        from flop_handles import count_flops
    finally:
        sys.path.pop(0)

    class Sample(torch.nn.Module):

        def forward(self, x, grid):
            return torch.nn.functional.grid_sample(x, grid, align_corners=False)

    res = count_flops(Sample(), (torch.rand(2, 3, 8, 8), torch.rand(2, 5, 7, 2) * 2 - 1))
    assert res['flops'] == 4 * 2 * 3 * 5 * 7
    assert res['grid_sampler_flops'] == res['flops']
    assert res['unsupported'] == {}
