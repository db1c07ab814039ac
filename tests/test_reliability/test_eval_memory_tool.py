"""``tools/experiments/eval_memory.py`` (docs/reliability.md, evaluation of
many images) runs end to end at tiny sizes and prints one sane line per
size plus the ratio line."""
import os.path as osp
import re
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_eval_memory_tool_runs():
    proc = subprocess.run([
        sys.executable, 'tools/experiments/eval_memory.py', '--sizes', '4',
        '12', '--img', '32'
    ],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=600,
                          env={
                              'OMP_NUM_THREADS': '1',
                              'PATH': '/usr/bin:/bin'
                          })
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    rows = re.findall(
        r'^\s*(\d+) images: RSS after build\s+([\d.]+) MiB, '
        r'peak\s+([\d.]+) MiB, growth\s+(-?[\d.]+) MiB \(mAP '
        r'(-?[\d.]+)\)', out, re.M)
    assert [int(r[0]) for r in rows] == [4, 12], out[-2000:]
    for _, built, peak, _, m in rows:
        assert 0 < float(built) <= float(peak)
        assert -1 <= float(m) <= 1
    assert re.search(
        r'peak-RSS growth ratio 12/4 images: [\d.]+ '
        r'\(size ratio 3\.0\)', out), out[-2000:]
