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


# ------------------------------------------------ tools/benchmark/cpu_latency.py
def _load_cpu_latency():
    spec = importlib.util.spec_from_file_location(
        'dfine_cpu_latency',
        osp.join(ROOT, 'tools', 'benchmark', 'cpu_latency.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_official_graph_computes_what_the_plugin_graph_computes(tmp_path):
    """The peer of the latency table is only fair if both graphs produce the
    same detections: the rebuilt official export (labels/boxes/scores, run in
    ONNX Runtime) against the plugin's MMDeploy graph (dets/labels) on the
    same weights and image."""
    import numpy as np
    import onnxruntime as ort
    bench = _load_cpu_latency()
    size = 320  # D-FINE-N: 2 levels (stride 16, 32) -> 500 tokens >= 300
    model = bench.build_model('n')
    with torch.no_grad():
        for p in model.parameters():  # the official init zeroes box layers
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(1, 3, size, size)
    plugin = bench.export_plugin_graph(model, x, str(tmp_path / 'plugin'))
    fused = bench.build_model('n')
    fused.load_state_dict(model.state_dict())
    assert bench.switch_to_deploy(fused) > 0
    official = bench.export_official_graph(fused, size,
                                           str(tmp_path / 'official.onnx'))
    dets, labels = ort.InferenceSession(plugin).run(None,
                                                    {'input': x.numpy()})
    o_labels, o_boxes, o_scores = ort.InferenceSession(official).run(
        None, {
            'images': x.numpy(),
            'orig_target_sizes': np.array([[size, size]], dtype=np.int64)
        })
    assert o_labels.shape == labels.shape == (1, 300)
    assert o_boxes.shape == (1, 300, 4) and o_scores.shape == (1, 300)
    np.testing.assert_allclose(o_scores, dets[..., 4], atol=1e-4)
    # same (label, box) pairs; the order of exact score ties may differ
    gap = np.diff(dets[0, :, 4])
    untied = np.abs(gap) > 1e-5
    assert untied.mean() > 0.5  # the comparison is not vacuous
    same = (o_labels[0] == labels[0])
    assert same.mean() > 0.95, same.mean()
    box_diff = np.abs(o_boxes[0][same] - dets[0, same, :4]).max()
    assert box_diff < 1e-2, box_diff


def test_cpu_latency_command_line(cli, tmp_path):
    """docs/deploy.md: ``python tools/benchmark/cpu_latency.py`` (shortened:
    N at 320x320, one round of two timed runs)."""
    import json
    import re
    import sys
    out_json = tmp_path / 'lat.json'
    out = cli([
        sys.executable, 'tools/benchmark/cpu_latency.py', '--variants', 'n',
        '--size', '320', '--runs', '2', '--rounds', '1', '--warmup', '0',
        '--threads', '1', '--out-json',
        str(out_json)
    ],
              cwd=ROOT)
    expected = ['torch-eager', 'torch-eager-fused', 'plugin-ort',
                'official-ort']
    if importlib.util.find_spec('openvino') is not None:
        expected += ['plugin-openvino', 'official-openvino']
    for path in expected:
        assert re.search(rf'^\| {path} \| [\d.]+ \|', out, re.M), out
    assert 'best plugin path' in out
    report = json.loads(out_json.read_text())
    rows = report['variants']['n']['rows']
    assert [r['path'] for r in rows] == expected
    assert min(r['x_fastest'] for r in rows) == 1.0
    for r in rows:
        assert r['n'] == 2 and r['median_ms'] > 0
        assert len(report['variants']['n']['times_s'][r['path']]) == 2
