"""tools/benchmark/compare.py: one plugin model and one MMDetection model in
one run."""
import csv
import importlib.util
import json
import os.path as osp
import re
import shutil
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


def _images(ann_file):
    with open(ann_file) as f:
        return len(json.load(f)['images'])


@pytest.mark.slow
def test_compare_two_models_table_json_csv_png(tiny_config, toy_coco, cli,
                                               tmp_path):
    """README: ``python tools/benchmark/compare.py CFG ... --out-dir DIR`` and
    ``--toy-minutes M`` (shortened: the tiny D-FINE-N toy config and
    RTMDet-tiny at 64x64, 1 thread, 2 timed runs, 0.1 min = 6 s of toy
    training each on the 8-image toy set at 64x64)."""
    out_dir = tmp_path / 'cmp'
    out = cli([
        sys.executable, 'tools/benchmark/compare.py',
        f'D-FINE-tiny={tiny_config}', f'RTMDet-tiny={RTMDET}', '--size', '64',
        '--threads', '1', '--warmup', '1', '--runs', '2', '--timeout', '600',
        '--toy-minutes', '0.1', '--toy-size', '64', '--toy-data', toy_coco,
        '--out-dir',
        str(out_dir)
    ],
              cwd=ROOT)
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
            assert m[backend]['p10_ms'] <= m[backend]['median_ms'] <= m[
                backend]['p90_ms']
    # toy accuracy: the same 6 s budget for both, at least one iteration, every
    # val image evaluated, mAP a COCO-style number, RTMDet's 80 classes -> 3
    acc_meta = data['meta']['accuracy']
    n_val = _images(osp.join(toy_coco, 'annotations', 'instances_val.json'))
    assert acc_meta['kind'] == 'toy mAP' and acc_meta['minutes'] == 0.1
    assert acc_meta['val_images'] == n_val and acc_meta['size'] == 64
    for m in models:
        acc = m['accuracy']
        assert acc['iters'] >= 1, acc
        assert acc[
            'train_s'] >= 6.0, acc  # stopped only once the budget was spent
        assert acc['eval_images'] == n_val, acc
        assert 0.0 <= acc['map'] <= 1.0 and m['ap'] == acc['map'], acc
        assert 'model.bbox_head.num_classes' in acc['adapted'], acc
    # worker logs stay in the worker
    assert 'wall-clock budget 6 s: trained' not in out

    # deformable attention of D-FINE is counted (grid_sample), RTMDet has none
    assert models[0]['grid_sampler_gflops'] > 0
    assert models[1]['grid_sampler_gflops'] == 0
    assert 'grid_sampler' not in models[0]['flops_uncounted_ops']

    table = (out_dir / 'compare.md').read_text()
    rows = [
        ln for ln in table.splitlines()
        if ln.startswith('| ') and '---' not in ln
    ]
    assert rows[0].startswith(
        '| model | params (M) | GFLOPs | eager (ms) | ORT (ms) | '
        'toy mAP | iters | note |'), rows[0]
    assert [r.split('|')[1].strip()
            for r in rows[1:]] == ['D-FINE-tiny', 'RTMDet-tiny']
    assert f'{models[1]["params"] / 1e6:.2f}' in rows[2]
    for row, m in zip(rows[1:], models):  # 2 rows, checked above
        cells = [c.strip() for c in row.split('|')]
        assert cells[6:8] == [f'{m["ap"]:.3f}',
                              str(m['accuracy']['iters'])], row
    assert table in out  # printed on stdout too
    with open(out_dir / 'compare.csv') as f:
        csv_rows = list(csv.DictReader(f))
    assert [r['label'] for r in csv_rows] == ['D-FINE-tiny', 'RTMDet-tiny']
    assert int(csv_rows[1]['params']) == models[1]['params']
    for r, m in zip(csv_rows, models):  # 2 rows, checked above
        assert float(r['ap']) == m['ap'] and int(
            r['iters']) == m['accuracy']['iters']
        assert r['ap_kind'] == 'toy mAP'
    assert (out_dir / 'compare.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_failing_model_gets_a_row_not_a_crash(tmp_path, cli):
    """A config that cannot build (unknown model type) and a model cut by the
    per-model timeout both end as rows with the reason; the run still writes
    every output and keeps the order."""
    bad = tmp_path / 'bad.py'
    bad.write_text("model = dict(type='NoSuchDetector')\n")
    out_dir = tmp_path / 'cmp'
    cli([
        sys.executable, 'tools/benchmark/compare.py', f'bad={bad}', '--size',
        '64', '--threads', '1', '--measure', 'eager', '--out-dir',
        str(out_dir)
    ],
        cwd=ROOT,
        timeout=300)
    data = json.loads((out_dir / 'compare.json').read_text())
    assert [m['label'] for m in data['models']] == ['bad']
    assert re.match(r'failed: KeyError: .*NoSuchDetector',
                    data['models'][0]['status']), data
    assert '| bad |' in (out_dir / 'compare.md').read_text()

    cli([
        sys.executable, 'tools/benchmark/compare.py', f'first={RTMDET}',
        f'second={RTMDET}', '--size', '64', '--threads', '1', '--timeout',
        '0.5', '--measure', 'eager', '--out-dir',
        str(out_dir)
    ],
        cwd=ROOT,
        timeout=300)
    data = json.loads((out_dir / 'compare.json').read_text())
    assert [(m['label'], m['status'])
            for m in data['models']] == [('first', 'timeout after 0.5 s'),
                                         ('second', 'timeout after 0.5 s')]
    table = (out_dir / 'compare.md').read_text()
    assert '| first |' in table and 'timeout after 0.5 s' in table
    assert (out_dir / 'compare.png').is_file()


def test_grid_sampler_flop_handle_counts_bilinear_taps():
    """4 multiply-adds per output element of a bilinear grid_sample:
    ``F.grid_sample``
    of a [2, 3, 8, 8] map at a [2, 5, 7, 2] grid -> 4 * 2*3*5*7."""
    from dfine_mmdet.benchmark.flops import count_flops

    class Sample(torch.nn.Module):

        def forward(self, x, grid):
            return torch.nn.functional.grid_sample(
                x, grid, align_corners=False)

    res = count_flops(Sample(),
                      (torch.rand(2, 3, 8, 8), torch.rand(2, 5, 7, 2) * 2 - 1))
    assert res['flops'] == 4 * 2 * 3 * 5 * 7
    assert res['grid_sampler_flops'] == res['flops']
    assert res['unsupported'] == {}


@pytest.mark.slow
def test_coco_root_evaluates_checkpoint_with_mmdet_evaluator(
        tiny_config, toy_coco, cli, tmp_path):
    """README:
    ``compare.py LABEL=CFG --coco-root DIR --checkpoints LABEL=CKPT``.

    The toy val split laid out as COCO (``val2017/``,
    ``annotations/instances_val2017.json``) under a directory the config does
    not name (its test set points at ``data/coco/``, like MMDetection's COCO
    configs), and a checkpoint saved from an independently built model: the
    row has an AP from CocoMetric over every image and says the checkpoint
    covered every model tensor."""
    coco = tmp_path / 'coco'
    shutil.copytree(osp.join(toy_coco, 'val'), coco / 'val2017')
    (coco / 'annotations').mkdir()
    shutil.copy(
        osp.join(toy_coco, 'annotations', 'instances_val.json'),
        coco / 'annotations' / 'instances_val2017.json')
    cfg = tmp_path / 'tiny_coco_layout.py'
    cfg.write_text(
        f"_base_ = {tiny_config!r}\n"
        "test_dataloader = dict(dataset=dict(data_root='data/coco/', "
        "ann_file='annotations/instances_val2017.json', "
        "data_prefix=dict(img='val2017/')))\n"
        "test_evaluator = "
        "dict(ann_file='data/coco/annotations/instances_val2017.json')\n")
    compare = _load()
    torch.manual_seed(1)
    model, _ = compare.build_model(str(cfg), 64)
    ckpt = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)

    out_dir = tmp_path / 'cmp'
    out = cli([
        sys.executable, 'tools/benchmark/compare.py', f'D-FINE-tiny={cfg}',
        '--size', '64', '--threads', '1', '--measure', '--coco-root',
        str(coco), '--checkpoints', f'D-FINE-tiny={ckpt}', '--out-dir',
        str(out_dir)
    ],
              cwd=ROOT,
              timeout=600)
    data = json.loads((out_dir / 'compare.json').read_text())
    assert [m['label'] for m in data['models']] == ['D-FINE-tiny'], data
    m = data['models'][0]
    assert m['status'] == 'ok' and not m['errors'], m
    acc = m['accuracy']
    assert acc['kind'] == 'COCO AP' and acc['checkpoint'] == str(ckpt)
    assert acc['eval_images'] == _images(coco / 'annotations' /
                                         'instances_val2017.json')
    assert acc['ckpt_covered'] == acc['ckpt_total'] == len(
        model.state_dict()), acc
    assert m['ap'] == acc['map'] and (0.0 <= acc['map'] <= 1.0
                                      or acc['map'] == -1), acc
    table = (out_dir / 'compare.md').read_text()
    assert '| COCO AP | note |' in table and f'| {acc["map"]:.3f} |' in table
    assert table in out
    assert (out_dir / 'compare.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_model_that_cannot_train_on_the_toy_set_gets_a_row(toy_coco, tmp_path):
    """D-FINE-N's 300 queries cannot be selected from the 80 memory tokens of a
    64x64 input: the accuracy stage records the reason, the row says it, and no
    accuracy is reported."""
    compare = _load()
    args = compare.parse_args([
        '--measure', '--toy-minutes', '0.05', '--toy-data', toy_coco,
        '--toy-size', '64', '--size', '64', '--threads', '1'
    ])
    result = dict(config='D-FINE-N', label='D-FINE-N')
    compare.measure('configs/dfine/dfine_hgnetv2_n_coco.py', args, result,
                    lambda: None)
    assert result['params'] > 0
    assert 'ap' not in result, result
    assert result['errors']['accuracy'].startswith(
        'RuntimeError'), result['errors']
    result['status'] = 'ok'
    meta = dict(
        size=64,
        threads=1,
        device='cpu',
        runs=1,
        warmup=0,
        date='d',
        machine='m',
        load_before='0',
        accuracy=dict(
            kind='toy mAP',
            minutes=0.05,
            size=64,
            batch=4,
            seed=0,
            train_images=8,
            val_images=4))
    row = compare.markdown_table([result], meta).splitlines()[-1]
    assert row.startswith(
        '| D-FINE-N |') and '| — | — | accuracy: RuntimeError' in row, row


def test_set_num_classes_on_mmdet_configs():
    """Single-stage, two-stage (RPN left class-agnostic), cascade (a list of
    heads) and mask heads are adapted; panoptic configs and configs without a
    class count are refused with a message naming the config and the field."""
    from mmengine.config import Config

    from dfine_mmdet.benchmark.num_classes import set_num_classes
    compare = _load()

    def cfg(name):
        return Config.fromfile(compare.resolve_config('mmdet::' + name)).model

    model = cfg('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    assert set_num_classes(model,
                           3) == ['model.roi_head.bbox_head.num_classes']
    assert model.roi_head.bbox_head.num_classes == 3
    model = cfg('cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py')
    assert set_num_classes(
        model,
        5) == [f'model.roi_head.bbox_head.{i}.num_classes'
               for i in range(3)] + ['model.roi_head.mask_head.num_classes']
    assert [h.num_classes for h in model.roi_head.bbox_head] == [5, 5, 5]
    model = cfg('rpn/rpn_r50_fpn_1x_coco.py')
    with pytest.raises(ValueError, match=r'rpn\.py: no num_classes field'):
        set_num_classes(model, 3, name='rpn.py')
    model = cfg('panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py')
    with pytest.raises(ValueError, match=r'pan\.py: .*num_things_classes'):
        set_num_classes(model, 3, name='pan.py')

    # the built model follows the adapted config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    model = cfg('rtmdet/rtmdet_tiny_8xb32-300e_coco.py')
    assert set_num_classes(model, 3) == ['model.bbox_head.num_classes']
    detector = MODELS.build(model)
    assert all(conv.out_channels == 3 for conv in detector.bbox_head.rtm_cls)
