"""End to end: training on a damaged toy set goes on, and every drop is
logged with its cause and count at the end of each epoch, summed over two
dataloader worker processes (docs/reliability.md)."""
import json
import math
import os.path as osp
import re

EXTRA = """
train_pipeline[0] = dict(type='CheckedLoadImageFromFile', on_error='skip')
train_pipeline[2] = dict(type='SanitizeBoundingBoxes', min_size=1,
                         drop_ignored=True, log_dropped=True)
test_pipeline[0] = dict(type='CheckedLoadImageFromFile', on_error='raise')
train_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=False,
    batch_sampler=None,  # every image drawn once per epoch (no grouping)
    dataset=dict(type='CheckedCocoDataset', data_root=data_root,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(type='CheckedCocoDataset', data_root=data_root,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=2, val_interval=2)
custom_hooks = [dict(type='DataSkipReportHook')]
"""


def _damage(root):
    """Zero-byte 000000.png, missing 000001.png, one NaN box, one box of a
    category not in the classes, one box outside its image."""
    open(osp.join(root, 'train', '000000.png'), 'wb').close()
    import os
    os.remove(osp.join(root, 'train', '000001.png'))
    ann_file = osp.join(root, 'annotations', 'instances_train.json')
    with open(ann_file) as f:
        data = json.load(f)
    anns = data['annotations']
    img = data['images'][3]
    next_id = max(a['id'] for a in anns) + 1
    extra = [
        dict(bbox=[math.nan, 1.0, 5.0, 5.0], category_id=1),
        dict(bbox=[1.0, 1.0, 5.0, 5.0], category_id=99),
        dict(bbox=[img['width'] + 10.0, 1.0, 5.0, 5.0], category_id=1),
    ]
    for i, ann in enumerate(extra):
        anns.append(
            dict(
                ann, id=next_id + i, image_id=img['id'], area=25.0, iscrowd=0))
    with open(ann_file, 'w') as f:
        json.dump(data, f)


def test_training_on_damaged_data_reports_skips(toy_copy, tmp_path, rel):
    _damage(toy_copy)
    cfg = tmp_path / 'damaged.py'
    cfg.write_text(rel.config_text(toy_copy, EXTRA))
    rc, out = rel.run(
        ['tools/train.py',
         str(cfg), '--work-dir',
         str(tmp_path / 'wd')])
    assert rc == 0, out[-4000:]
    reports = re.findall(r'data skips in train epoch (\d):\n((?:  .*\n)+)',
                         out)
    assert [e for e, _ in reports] == ['1', '2'], out[-4000:]
    per_epoch = [
        dict((m.group(1), (int(m.group(2)), int(m.group(3))))
             for m in re.finditer(r'  (.+?): (\d+) \(run total (\d+);', body))
        for _, body in reports
    ]
    # annotation drops: parsed once, before epoch 1
    for cause in ('non-finite (NaN/inf) box coordinates',
                  'category id not in metainfo.classes',
                  'box outside the image'):
        assert per_epoch[0][cause] == (1, 1), (cause, per_epoch)
        assert per_epoch[1][cause] == (0, 1), (cause, per_epoch)
    # bad images: drawn at least once per epoch (more if the dataset's
    # random refetch after a skip lands on the other bad image), each time in
    # one of the two dataloader worker processes
    for cause in ('missing image file', 'zero-byte image file'):
        (new1, tot1), (new2, tot2) = per_epoch[0][cause], per_epoch[1][cause]
        assert new1 >= 1 and new2 >= 1 and tot1 == new1, (cause, per_epoch)
        assert tot2 == new1 + new2, (cause, per_epoch)
    assert 'data skip (missing image file): ' + toy_copy in out
    assert 'Epoch(val) [2]' in out and 'coco/bbox_mAP' in out
