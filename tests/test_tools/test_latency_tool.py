"""tools/benchmark/latency.py (the latency tool) and its library
:mod:`dfine_mmdet.benchmark.inference_paths`."""
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


def test_param_count_and_eager_path(tmp_path):
    from dfine_mmdet.benchmark import inference_paths as ip
    from dfine_mmdet.benchmark.models import count_params
    from dfine_mmdet.benchmark.timing import time_interleaved
    latency = _load()
    model = ip.build_dfine('n')
    # official count (spec 1.1) incl. the two W(n) scalars
    assert count_params(model) == latency.OFFICIAL_PARAMS['n']
    paths = ip.build_paths(
        'n', 320, 1, str(tmp_path), skip=['onnxruntime', 'openvino'])
    assert list(paths) == ['torch-eager', 'torch-eager-fused']
    times = time_interleaved(paths, rounds=2, warmup=0, runs=1)
    assert all(len(t) == 2 and all(x > 0 for x in t) for t in times.values())
    rows = ip.path_rows(times)
    assert min(r['x_fastest'] for r in rows) == 1.0
    assert rows[0]['speedup_vs_eager'] == 1.0


def test_official_graph_computes_what_the_plugin_graph_computes(tmp_path):
    """The peer of the latency table is only fair if both graphs produce the
    same detections: the rebuilt official export (labels/boxes/scores, run in
    ONNX Runtime) against the plugin's MMDeploy graph (dets/labels) on the
    same weights and image."""
    import numpy as np
    import onnxruntime as ort

    from dfine_mmdet.benchmark import inference_paths as bench
    size = 320  # D-FINE-N: 2 levels (stride 16, 32) -> 500 tokens >= 300
    model = bench.build_dfine('n')
    with torch.no_grad():
        for p in model.parameters():  # the official init zeroes box layers
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(1, 3, size, size)
    plugin = bench.export_end2end(model, x, str(tmp_path / 'plugin'))
    fused = bench.build_dfine('n')
    fused.load_state_dict(model.state_dict())
    assert bench.switch_to_deploy(fused) > 0
    official = bench.export_official_graph(fused, size,
                                           str(tmp_path / 'official.onnx'))
    dets, labels = ort.InferenceSession(plugin).run(None, {'input': x.numpy()})
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


def test_latency_command_line(cli, tmp_path):
    """README / docs/deploy.md: ``python tools/benchmark/latency.py``
    (shortened: N at 320x320, one round of two timed runs): the parameter
    table (N..X against the official counts), then every path."""
    import json
    import re
    import sys
    out_json = tmp_path / 'lat.json'
    out = cli([
        sys.executable, 'tools/benchmark/latency.py', '--variants', 'n',
        '--size', '320', '--runs', '2', '--rounds', '1', '--warmup', '0',
        '--threads', '1', '--out-json',
        str(out_json)
    ],
              cwd=ROOT)
    expected = [
        'torch-eager', 'torch-eager-fused', 'plugin-ort', 'official-ort'
    ]
    if importlib.util.find_spec('openvino') is not None:
        expected += ['plugin-openvino', 'official-openvino']
    for v in 'NSMLX':
        assert re.search(rf'^{v}\s+[\d,]+\s+[\d,]+\s+yes$', out, re.M), out
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
