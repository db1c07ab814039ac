"""Published COCO AP (``dfine_mmdet/benchmark/published_ap.py``),
``compare.py --ap`` and the speed/accuracy chart.

The MMDetection values are re-read from the model-zoo metadata shipped with the
installed mmdet (``mmdet/.mim/configs/<model>/metafile.yml``), the D-FINE ones
from the official results table in ``../shared/docs/dfine_reference_spec.md``
(skipped with the reason when ``../shared`` is absent).
"""
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
from markdown_utils import ROOT

from dfine_mmdet.benchmark import speed_accuracy_chart
from dfine_mmdet.benchmark.published_ap import PUBLISHED_COCO_AP, lookup


def _metafile_ap(config: str) -> float:
    """box AP of ``mmdet::<dir>/<name>.py`` in the installed metafile.yml."""
    import mmdet
    import yaml
    rel = config[len('mmdet::'):]
    meta = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', osp.dirname(rel),
        'metafile.yml')
    if not osp.isfile(meta):
        pytest.skip(f'{meta} is not installed with mmdet')
    with open(meta) as f:
        data = yaml.safe_load(f)
    for model in data['Models']:
        if model.get('Config', '').endswith(rel):
            for res in model['Results']:
                if res['Task'] == 'Object Detection' and res[
                        'Dataset'] == 'COCO':
                    return float(res['Metrics']['box AP'])
    raise AssertionError(f'{rel} has no COCO box AP in {meta}')


@pytest.mark.parametrize('label', [
    k for k, v in PUBLISHED_COCO_AP.items() if v.config.startswith('mmdet::')
])
def test_mmdet_values_equal_the_model_zoo_metadata(label):
    entry = PUBLISHED_COCO_AP[label]
    assert entry.ap == _metafile_ap(entry.config), label


def test_dfine_values_equal_the_official_table(parity_dir):
    spec = osp.join(osp.dirname(parity_dir), 'docs', 'dfine_reference_spec.md')
    if not osp.isfile(spec):
        pytest.skip(f'{spec} is absent')
    with open(spec, encoding='utf-8') as f:
        text = f.read()
    official = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^\| (D-FINE-[NSMLX]) \| ([\d.]+) \|', text,
                             re.M)
    }
    assert len(official) == 5, official
    for label, ap in official.items():
        assert PUBLISHED_COCO_AP[label].ap == ap, label


def test_lookup_by_label_or_config_file():
    assert lookup('RTMDet-s').ap == 44.5
    assert lookup('my-rtmdet',
                  'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py').ap == 44.5
    assert lookup('n', '/abs/configs/dfine/dfine_hgnetv2_n_coco.py').ap == 42.8
    assert lookup('unknown',
                  'configs/dfine/toy/dfine_hgnetv2_n_toy.py') is None
    for label, entry in PUBLISHED_COCO_AP.items():
        if not entry.config.startswith('mmdet::'):
            assert osp.isfile(osp.join(ROOT, entry.config)), entry.config


def test_chart_labels_do_not_overlap(tmp_path):
    """The default set's points (latencies close together at the small end)
    get labels whose boxes overlap neither each other nor the plot edge."""
    lat = {
        'RTMDet-tiny': 51.4,
        'RTMDet-s': 78.1,
        'YOLOX-tiny': 52.2,
        'YOLOX-s': 65.6,
        'DINO-R50-4scale': 1357.5,
        'DeformableDETR-R50': 1031.4,
        'D-FINE-N': 30.8,
        'D-FINE-S': 82.8,
        'D-FINE-M': 172.6
    }
    points = [
        dict(label=k, latency_ms=v, ap=PUBLISHED_COCO_AP[k].ap)
        for k, v in lat.items()
    ]
    path = str(tmp_path / 'chart.png')
    boxes = speed_accuracy_chart.plot(
        points, path, 'latency', 'AP', 'title', footnote='note')
    assert osp.getsize(path) > 10_000 and len(boxes) == len(points)
    for i, a in enumerate(boxes):
        for b in boxes[:i]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[
                1], (a, b)


def test_family():
    fam = speed_accuracy_chart.family
    assert [
        fam(x) for x in ('D-FINE-N', 'RTMDet-tiny', 'DINO-R50-4scale',
                         'DeformableDETR-R50', 'DEIM-D-FINE-S')
    ] == ['D-FINE', 'RTMDet', 'DINO', 'DeformableDETR', 'DEIM']


@pytest.mark.slow
def test_compare_ap_option(tmp_path):
    """``python tools/benchmark/compare.py ... --ap``: published values by
    label, a ``LABEL=AP`` override, a row note for a model without one, and
    the chart (tiny D-FINE-N toy config and RTMDet-tiny at 128x128, eager
    only, 1 thread)."""
    out_dir = tmp_path / 'cmp'
    cmd = [
        sys.executable, 'tools/benchmark/compare.py',
        'D-FINE-N=configs/dfine/toy/dfine_hgnetv2_n_toy.py',
        'RTMDet-tiny=mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
        'mine=configs/dfine/toy/dfine_hgnetv2_n_toy.py', '--size', '128',
        '--threads', '1', '--warmup', '0', '--runs', '1', '--measure', 'eager',
        '--timeout', '600', '--out-dir',
        str(out_dir), '--ap'
    ]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env=dict(__import__('os').environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    data = json.loads((out_dir / 'compare.json').read_text())
    rows = {m['label']: m for m in data['models']}
    assert rows['D-FINE-N']['ap'] == 42.8 and rows['RTMDet-tiny']['ap'] == 40.9
    assert rows['mine'].get(
        'ap') is None and 'no published AP' in rows['mine']['errors']['ap']
    assert data['meta']['ap_name'] == 'COCO val2017 box AP (%), published'
    assert set(data['meta']['ap_sources']) == {'D-FINE-N', 'RTMDet-tiny'}
    assert osp.getsize(out_dir / 'compare.png') > 10_000
    table = (out_dir / 'compare.md').read_text()
    assert '42.800' in table and 'no published AP' in table

    # LABEL=AP overrides / supplies
    proc = subprocess.run(
        cmd[:-1] + ['--ap', 'mine=12.5', '--measure'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env=dict(__import__('os').environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = {
        m['label']: m
        for m in json.loads((out_dir / 'compare.json').read_text())['models']
    }
    assert rows['mine']['ap'] == 12.5 and rows['D-FINE-N'].get('ap') is None
