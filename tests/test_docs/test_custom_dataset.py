"""docs/custom_dataset.md, run from top to bottom, and the class ids end to
end.

The page is the script: every ``bash`` block is run in order (``bash -e``)
from a scratch directory laid out like the repository root (``configs`` and
``tools`` linked in), every ``python`` block whose first line is
``# file: NAME`` is written to ``NAME`` when it is reached, and a block
preceded by ``<!-- expect-error: TEXT -->`` must exit non-zero with ``TEXT`` in
its output. Any other ``python`` block fails the test (it could not be run).
So the page and this test cannot drift: a command changed on the page is the
command run here.

The released checkpoint the page downloads is replaced by the official-format
random weights of the parity fixtures (D-FINE-N, 80 classes; ``../shared``,
skipped with the reason when absent), written as ``dfine_n_coco.pth``.

Then the class ids are checked end to end (category ids 40, 7, 23 listed in
that order, see the page): dataset labels, the training log, the per-class AP
table, the PyTorch results file, and the exported model's detections as an
application computes them against MMDeploy's evaluation of the same file.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest
from markdown_utils import ROOT, read, split_fences

PAGE = 'docs/custom_dataset.md'
IDS = {'square': 40, 'circle': 7, 'triangle': 23}
CLASSES = ('square', 'circle', 'triangle')


def page_steps(text):
    """``[(kind, payload, expect_error, line)]`` in page order: kind ``'file'``
    (payload ``(name, body)``) or ``'bash'`` (payload: the block)."""
    blocks, prose = split_fences(text)
    prose_at = dict(prose)
    steps = []
    for b in blocks:
        expect = None
        i = b.line - 2  # the line before the opening fence
        while i > 0 and i in prose_at and not prose_at[i].strip():
            i -= 1
        m = re.match(r'^<!--\s*expect-error:\s*(.*?)\s*-->$',
                     prose_at.get(i, '').strip())
        if m:
            expect = m.group(1)
        if b.lang == 'bash':
            steps.append(('bash', b.body, expect, b.line))
        elif b.lang == 'python':
            first = b.body.split('\n', 1)[0]
            m = re.match(r'^# file: (\S+)$', first)
            assert m, (
                f'{PAGE}:{b.line}: a python block must start with "# file: '
                'NAME" (it is written to NAME); other python code cannot be '
                'run')
            steps.append(('file', (m.group(1), b.body + '\n'), None, b.line))
        else:
            assert b.lang in (
                'text', 'json'), f'{PAGE}:{b.line}: unknown block {b.lang!r}'
    return steps


@pytest.fixture(scope='module')
def journey(tmp_path_factory, parity_dir):
    """Runs the page in a scratch directory; returns ``(workdir, outputs)``
    with ``outputs[i]`` the output of the i-th bash block."""
    import torch
    work = tmp_path_factory.mktemp('custom_dataset')
    for name in ('configs', 'tools'):
        os.symlink(osp.join(ROOT, name), work / name)
    # stand-in for the released dfine_n_coco.pth (official layout, 80 classes)
    sys.path.insert(0, osp.join(ROOT, 'tests', 'test_models'))
    from dfine_model_utils import official_random_state_dict
    _, sd = official_random_state_dict(parity_dir, 'n')
    torch.save({'model': sd}, str(work / 'dfine_n_coco.pth'))

    venv_bin = osp.dirname(sys.executable)
    env = dict(
        os.environ,
        PATH=venv_bin + os.pathsep + os.environ.get('PATH', ''),
        PYTHONPATH=ROOT,
        OMP_NUM_THREADS='1',
        PYTHONUNBUFFERED='1')
    outputs = []
    for kind, payload, expect, line in page_steps(read(PAGE)):
        if kind == 'file':
            name, body = payload
            (work / name).write_text(body)
            continue
        proc = subprocess.run(['bash', '-e', '-o', 'pipefail', '-c', payload],
                              cwd=str(work),
                              env=env,
                              capture_output=True,
                              text=True,
                              timeout=1200)
        out = proc.stdout + proc.stderr
        if expect is None:
            assert proc.returncode == 0, (
                f'{PAGE}:{line}: block failed ({proc.returncode}):\n'
                f'{payload}\n{out[-6000:]}')
        else:
            assert proc.returncode != 0, (
                f'{PAGE}:{line}: expected to fail:\n{payload}')
            assert expect in out, (
                f'{PAGE}:{line}: failed, but without {expect!r}:\n'
                f'{out[-6000:]}')
        outputs.append((payload, out))
    return work, outputs


def _output(outputs, start):
    """Output of the first block whose command starts with ``start``."""
    for cmd, out in outputs:
        if cmd.startswith(start):
            return out
    raise AssertionError(f'no block starts with {start!r}')


def test_page_structure():
    """The page has the steps the test relies on, in this order, and its
    expected errors (cheap: no command is run)."""
    steps = page_steps(read(PAGE))
    cmds = [p for k, p, _, _ in steps if k == 'bash']
    order = [
        'python tools/make_toy_dataset.py',
        'python tools/convert_official_ckpt.py', 'python check_classes.py',
        'python tools/train.py', 'python tools/test.py',
        'python tools/deploy.py', 'python detect_onnx.py',
        'python eval_onnx.py'
    ]
    pos = [
        next(i for i, c in enumerate(cmds) if c.startswith(o)) for o in order
    ]
    assert pos == sorted(pos), list(zip(order, pos))
    files = [p[0] for k, p, _, _ in steps if k == 'file']
    assert files == [
        'shapes_dfine_n.py', 'check_classes.py', 'detect_onnx.py',
        'eval_onnx.py'
    ]
    assert sum(e is not None for _, _, e, _ in steps) == 3


def test_page_steps_detect_a_stray_python_block():
    with pytest.raises(AssertionError, match='file: NAME'):
        page_steps('```python\nprint(1)\n```\n')
    steps = page_steps('<!-- expect-error: boom -->\n```bash\nfalse\n```\n')
    assert steps == [('bash', 'false', 'boom', 3)
                     ]  # line of the block's first command


@pytest.mark.slow
def test_dataset_labels_follow_class_names(journey):
    """Every annotation of the awkward json gets the label of its category's
    name in `classes` (ids 40 / 7 / 23 -> 0 / 1 / 2)."""
    work, _ = journey
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine import Config
    register_all_modules()
    import dfine_mmdet  # noqa: F401
    cfg = Config.fromfile(str(work / 'shapes_dfine_n.py'))
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(
        data_root=str(work / ds_cfg.data_root),
        pipeline=[],
        filter_cfg=dict(filter_empty_gt=False))
    ds = DATASETS.build(ds_cfg)
    assert tuple(ds.metainfo['classes']) == CLASSES
    with open(work / 'data/shapes/annotations/instances_train.json') as f:
        coco = json.load(f)
    assert [(c['id'], c['name'])
            for c in coco['categories']] == [(40, 'square'), (7, 'circle'),
                                             (23, 'triangle')]
    names = {c['id']: c['name'] for c in coco['categories']}
    by_img = defaultdict(list)
    for a in coco['annotations']:
        by_img[a['image_id']].append(names[a['category_id']])
    checked = 0
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        got = [CLASSES[inst['bbox_label']] for inst in info['instances']]
        assert got == by_img[info['img_id']], (info['img_id'], got)
        checked += len(got)
    assert checked == len(coco['annotations']) > 0


@pytest.mark.slow
def test_training_adapts_the_80_class_checkpoint(journey):
    work, outputs = journey
    out = _output(
        outputs,
        'python tools/train.py shapes_dfine_n.py --work-dir work_dirs/shapes ')
    assert ('ClassHeadAdaptHook: class count differs from the checkpoint'
            in out), out[-3000:]
    assert ('bbox_head.cls_branches' in out
            and 'dn_query_generator.label_embedding' in out)
    for epoch in (1, 2):
        assert osp.isfile(work / f'work_dirs/shapes/epoch_{epoch}.pth')


@pytest.mark.slow
def test_per_class_ap_and_pytorch_results_use_the_json_ids(journey):
    work, outputs = journey
    out = _output(
        outputs,
        'python tools/test.py shapes_dfine_n.py work_dirs/shapes/epoch_2.pth')
    for name in CLASSES:  # the classwise table of CocoMetric
        assert re.search(
            rf'\|\s*{name}\s*\|',
            out), f'no per-class AP row for {name}:\n{out[-3000:]}'
    with open(work / 'work_dirs/shapes_test/results.bbox.json') as f:
        results = json.load(f)
    assert results and {r['category_id'] for r in results} <= set(IDS.values())


@pytest.mark.slow
def test_metric_maps_every_label_to_its_json_id(journey, tmp_path):
    """MMDetection's label -> category id mapping of the page's evaluator,
    for every label (a model after 4 iterations may predict one class only):
    label i is written with the id of ``classes[i]``."""
    import torch
    from mmdet.registry import METRICS
    from mmdet.utils import register_all_modules
    from mmengine import Config
    work, _ = journey
    register_all_modules()
    cfg = Config.fromfile(str(work / 'shapes_dfine_n.py'))
    metric = METRICS.build(
        dict(
            cfg.test_evaluator,
            ann_file=str(work / cfg.test_evaluator.ann_file),
            format_only=True,
            outfile_prefix=str(tmp_path / 'm')))
    metric.dataset_meta = dict(classes=CLASSES)
    pred = dict(
        img_id=0,
        bboxes=torch.tensor([[0., 0., 9., 9.]] * 3).numpy(),
        scores=torch.tensor([0.9, 0.8, 0.7]).numpy(),
        labels=torch.tensor([0, 1, 2]).numpy())
    metric.compute_metrics([(dict(img_id=0, width=64, height=64), pred)])
    with open(tmp_path / 'm.bbox.json') as f:
        written = json.load(f)
    assert [r['category_id'] for r in written] == [IDS[c] for c in CLASSES]


def _by_image(results, top):
    out = defaultdict(list)
    for r in results:
        out[r['image_id']].append(r)
    return {
        k: sorted(v, key=lambda r: -r['score'])[:top]
        for k, v in out.items()
    }


def _pair(a, pool, box_tol, score_tol):
    """The detection of ``pool`` nearest to ``a`` (score, then box), if within
    the tolerances."""
    best = min(
        pool,
        key=lambda b: (abs(a['score'] - b['score']),
                       float(np.abs(np.subtract(a['bbox'], b['bbox'])).max())))
    if abs(best['score'] - a['score']) <= score_tol and float(
            np.abs(np.subtract(best['bbox'], a['bbox'])).max()) <= box_tol:
        return best
    return None


@pytest.mark.slow
def test_exported_model_class_ids_end_to_end(journey):
    """A detection of class X by the exported model is X's category id: the
    application (ONNX Runtime alone, `classes` -> json ids by name) equals
    MMDeploy's evaluation of the same file (MMDetection's label -> id
    mapping) detection for detection, and PyTorch's top detections come back
    from the exported model with the same category id."""
    work, outputs = journey
    assert 'PASS' in _output(outputs, 'python tools/deploy.py')
    with open(work / 'work_dirs/shapes_ort/detections.bbox.json') as f:
        app = json.load(f)
    with open(work / 'work_dirs/shapes_ort/results.bbox.json') as f:
        mmdeploy = json.load(f)
    with open(work / 'work_dirs/shapes_test/results.bbox.json') as f:
        torch_res = json.load(f)
    with open(work / 'data/shapes/annotations/instances_val.json') as f:
        n_images = len(json.load(f)['images'])

    for r in app:
        assert r['category_id'] == IDS[r['class_name']], r
    app_img, dep_img, pt_img = _by_image(app, 50), _by_image(mmdeploy,
                                                             1000), _by_image(
                                                                 torch_res, 10)
    assert len(app_img) == len(dep_img) == len(pt_img) == n_images
    for img, dets in app_img.items():
        for a in dets:
            b = _pair(a, dep_img[img], box_tol=0.05, score_tol=1e-5)
            assert b is not None, (
                f'image {img}: {a} has no MMDeploy counterpart')
            assert b['category_id'] == a['category_id'], (a, b)
    for img, dets in pt_img.items():
        for p in dets:
            b = _pair(p, dep_img[img], box_tol=0.05, score_tol=1e-3)
            assert b is not None, (
                f'image {img}: PyTorch detection {p} not in the export')
            assert b['category_id'] == p['category_id'], (p, b)


def test_make_toy_dataset_category_ids(tmp_path):
    """``--category-ids``: the ids and the json order as given, the images and
    boxes identical to the default ids', and duplicate ids refused."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'mtd', osp.join(ROOT, 'tools', 'make_toy_dataset.py'))
    mtd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mtd)
    mtd.main(
        ['--out',
         str(tmp_path / 'a'), '--num-train', '6', '--num-val', '2'])
    mtd.main([
        '--out',
        str(tmp_path / 'b'), '--num-train', '6', '--num-val', '2',
        '--category-ids', '40', '7', '23'
    ])
    a = json.loads(
        (tmp_path / 'a/annotations/instances_train.json').read_text())
    b = json.loads(
        (tmp_path / 'b/annotations/instances_train.json').read_text())
    assert [(c['id'], c['name'])
            for c in b['categories']] == [(40, 'square'), (7, 'circle'),
                                          (23, 'triangle')]
    remap = {1: 40, 2: 7, 3: 23}
    assert [
        dict(x, category_id=remap[x['category_id']]) for x in a['annotations']
    ] == b['annotations']
    assert (tmp_path / 'a/train/000003.png').read_bytes() == \
        (tmp_path / 'b/train/000003.png').read_bytes()
    with pytest.raises(SystemExit):
        mtd.main(
            ['--out',
             str(tmp_path / 'c'), '--category-ids', '5', '5', '6'])
