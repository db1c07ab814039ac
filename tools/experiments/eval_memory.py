"""Peak memory of a streamed COCO evaluation: does it stay bounded as the
test set grows?

    python tools/experiments/eval_memory.py [--sizes 500 5000] [--img 32]

For each size N it writes N small synthetic images (one square each, COCO
json) to a temporary folder, then, in a fresh subprocess, runs MMEngine's
test loop (``Runner.test()``) of the toy D-FINE-N config shrunk to 64x64
inputs / 10 queries (random weights; ``max_per_img=10``) with ``CocoMetric``
and prints the process's peak RSS (``ru_maxrss``) and its RSS after the
model was built. The last line gives the ratio of the peak-RSS growth
(peak - after-build) between the largest and the smallest N next to the
ratio of the sizes: bounded (streamed) evaluation keeps the first far below
the second (what grows is CocoMetric's list of per-image results, O(N x
max_per_img) small arrays). Not a unit test; numbers depend on the machine.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY = osp.join(ROOT, 'configs', 'dfine', 'toy', 'dfine_hgnetv2_n_toy.py')

CHILD = r'''
import resource, sys
from mmengine.config import Config
from mmengine.runner import Runner
def rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
cfg = Config.fromfile(sys.argv[1])
runner = Runner.from_cfg(cfg)
runner.model  # built
built = rss_kib()
metrics = runner.test()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f'RESULT built_kib={built} peak_kib={peak} '
      f'map={metrics.get("coco/bbox_mAP", "n/a")}')
'''

CONFIG = '''
_base_ = {toy!r}
data_root = {root!r}
model = dict(num_queries=10, eval_spatial_size=(64, 64),
             dn_cfg=dict(num_denoising=10), test_cfg=dict(max_per_img=10))
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='Resize', scale=(64, 64), keep_ratio=False, backend='pillow'),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor')),
]
test_dataloader = dict(batch_size=32, num_workers=0, dataset=dict(
    data_root=data_root, ann_file='ann.json', data_prefix=dict(img='img/'),
    test_mode=True, pipeline=test_pipeline))
test_evaluator = dict(type='CocoMetric', ann_file=data_root + 'ann.json',
                      metric='bbox', format_only=False)
default_hooks = dict(logger=dict(interval=1000))
log_level = 'WARNING'
work_dir = {work!r}
'''


def make_set(root, n, size):
    import numpy as np
    from PIL import Image
    os.makedirs(osp.join(root, 'img'), exist_ok=True)
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(n):
        arr = np.full((size, size, 3), 30, np.uint8)
        x, y = rng.integers(0, size // 2, 2)
        w = int(rng.integers(4, size // 2))
        arr[y:y + w, x:x + w] = 220
        name = f'{i:06d}.png'
        Image.fromarray(arr).save(osp.join(root, 'img', name))
        images.append(dict(id=i, file_name=name, width=size, height=size))
        anns.append(
            dict(
                id=i + 1,
                image_id=i,
                category_id=1,
                bbox=[int(x), int(y), w, w],
                area=w * w,
                iscrowd=0))
    cats = [
        dict(id=k + 1, name=c)
        for k, c in enumerate(('square', 'circle', 'triangle'))
    ]
    with open(osp.join(root, 'ann.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)


def run(n, size, tmp):
    root = osp.join(tmp, f'set_{n}') + '/'
    make_set(root, n, size)
    cfg = osp.join(tmp, f'eval_{n}.py')
    with open(cfg, 'w') as f:
        f.write(
            CONFIG.format(toy=TOY, root=root, work=osp.join(tmp, f'wd_{n}')))
    env = dict(
        os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    proc = subprocess.run([sys.executable, '-c', CHILD, cfg],
                          cwd=tmp,
                          capture_output=True,
                          text=True,
                          env=env)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT')]
    if proc.returncode or not line:
        sys.exit(f'error: evaluation of {n} images failed:\n'
                 f'{proc.stderr[-3000:]}')
    vals = dict(kv.split('=') for kv in line[0].split()[1:])
    return int(vals['built_kib']), int(vals['peak_kib']), vals['map']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[500, 5000])
    parser.add_argument('--img', type=int, default=32)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            built, peak, m = run(n, args.img, tmp)
            rows.append((n, built, peak))
            print(
                f'{n:6d} images: RSS after build {built / 1024:7.1f} MiB, '
                f'peak {peak / 1024:7.1f} MiB, growth '
                f'{(peak - built) / 1024:6.1f} MiB (mAP {m})',
                flush=True)
    (n0, b0, p0), (n1, b1, p1) = rows[0], rows[-1]
    g0, g1 = max(p0 - b0, 1), max(p1 - b1, 1)
    print(f'peak-RSS growth ratio {n1}/{n0} images: {g1 / g0:.2f} '
          f'(size ratio {n1 / n0:.1f}); peak RSS ratio {p1 / p0:.2f}')


if __name__ == '__main__':
    main()
