"""tools/experiments/data_checks_overhead.py runs end to end at a tiny size and
prints its summary lines (the numbers themselves are measured by running the
script, not asserted here)."""
import re

import pytest


@pytest.mark.slow
def test_data_checks_overhead_script_runs(rel):
    rc, out = rel.run([
        'tools/experiments/data_checks_overhead.py', '--num-train', '8',
        '--rounds', '1', '--iters', '1', '--warmup', '0', '--parse-images',
        '40'
    ])
    assert rc == 0, out[-3000:]
    assert re.search(
        r'data checks overhead: dfine_hgnetv2_n_toy\.py, 8 '
        r'images, batch 8', out), out[-3000:]
    m = re.search(
        r'summary: pipeline checked/mmdet ([\d.]+)x per image; '
        r'training iteration checked/mmdet ([\d.]+)x', out)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0, out[-3000:]
    assert re.search(
        r'summary: annotation parse of 40 synthetic images x 7 '
        r'boxes \(fastest of 2\): checked/mmdet [\d.]+x', out)
