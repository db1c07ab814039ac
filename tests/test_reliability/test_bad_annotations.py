"""Bad COCO annotation files: counted drops by cause, or an error naming
the file and field before the first iteration (docs/reliability.md)."""
import json
import math

import pytest

from dfine_mmdet.datasets import skip_counter

CLASSES = ('square', 'circle')


@pytest.fixture(autouse=True)
def _fresh_counter():
    skip_counter.reset()
    yield
    skip_counter.reset()


def _build(ann_file, filter_empty_gt=False, test_mode=False):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    return DATASETS.build(
        dict(
            type='CheckedCocoDataset',
            ann_file=str(ann_file),
            data_prefix=dict(img=''),
            metainfo=dict(classes=CLASSES),
            filter_cfg=dict(filter_empty_gt=filter_empty_gt),
            test_mode=test_mode,
            pipeline=[]))


def _coco(tmp_path, anns, images=None, name='ann.json', cats=None):
    images = images if images is not None else [
        dict(id=1, file_name='a.jpg', width=100, height=80),
        dict(id=2, file_name='b.jpg', width=100, height=80),
    ]
    cats = cats if cats is not None else [
        dict(id=1, name='square'),
        dict(id=2, name='circle'),
        dict(id=7, name='other')
    ]
    for i, ann in enumerate(anns):
        ann.setdefault('id', i + 1)
        ann.setdefault('image_id', 1)
        ann.setdefault('category_id', 1)
        ann.setdefault('iscrowd', 0)
        if 'area' not in ann:
            ann['area'] = ann['bbox'][2] * ann['bbox'][3]
    path = tmp_path / name
    # allow_nan: NaN / Infinity tokens as a user's exporter may write them
    path.write_text(
        json.dumps(
            dict(images=images, annotations=anns, categories=cats),
            allow_nan=True))
    return path


def test_bad_boxes_are_counted_by_cause(tmp_path):
    anns = [
        dict(bbox=[10, 10, 20, 20]),  # kept
        dict(bbox=[10, 10, 20, 20], category_id=2),  # kept
        dict(bbox=[10, 10, -5, 20]),  # negative
        dict(bbox=[10, 10, 0, 20]),  # zero area
        dict(bbox=[200, 10, 20, 20]),  # outside
        dict(bbox=[-50, -50, 20, 20]),  # outside
        dict(bbox=[10, 10, 0.5, 20]),  # < 1 px
        dict(bbox=[math.nan, 10, 20, 20], area=400),  # NaN
        dict(bbox=[10, 10, math.inf, 20], area=400),  # inf
        dict(bbox=[10, 10, 20, 20], category_id=7),  # not in classes
        dict(bbox=[10, 10, 20, 20], image_id=2),  # kept, image 2
    ]
    ds = _build(_coco(tmp_path, anns))
    assert len(ds) == 2
    assert len(ds[0]['instances']) == 2 and len(ds[1]['instances']) == 1
    counts, example = skip_counter.collect()
    assert counts == {
        'zero-area or negative box': 2,
        'box outside the image': 2,
        'box side < 1 px': 1,
        'non-finite (NaN/inf) box coordinates': 2,
        'category id not in metainfo.classes': 1,
    }
    assert 'ann.json: annotation id 10 of image a.jpg' in \
        example['category id not in metainfo.classes']


def test_image_without_annotations(tmp_path):
    ann = _coco(tmp_path, [dict(bbox=[10, 10, 20, 20])])
    ds = _build(ann, filter_empty_gt=False)  # D-FINE: trained as background
    assert len(ds) == 2 and ds[1]['instances'] == []
    assert not skip_counter.collect()[0]
    ds = _build(ann, filter_empty_gt=True)
    assert len(ds) == 1
    counts, example = skip_counter.collect()
    assert counts == {'image without annotations (filter_empty_gt)': 1}
    assert example['image without annotations (filter_empty_gt)'].endswith(
        'b.jpg')


@pytest.mark.parametrize('content,match', [
    ('', r'ann\.json: empty annotation file \(0 bytes\)'),
    ('{"images": [', r'ann\.json: not a valid COCO JSON file'),
    ('{"images": [], "annotations": [], "categories": []}',
     r'ann\.json: the split has no images'),
])
def test_unusable_annotation_file(tmp_path, content, match):
    path = tmp_path / 'ann.json'
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        _build(path)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(
            ValueError, match='nope.json: annotation file not '
            'found'):
        _build(tmp_path / 'nope.json')


def test_missing_or_malformed_bbox_field(tmp_path):
    path = _coco(tmp_path, [dict(bbox=[1, 2, 3, 4])])
    data = json.loads(path.read_text())
    del data['annotations'][0]['bbox']
    data['annotations'][0]['area'] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(
            ValueError,
            match="ann.json: annotation id 1 of image "
            "a.jpg has no field 'bbox'"):
        _build(path)
    data['annotations'][0]['bbox'] = [1, 2, 3]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"field 'bbox' must be 4 numbers"):
        _build(path)


def test_missing_category_id_field(tmp_path):
    path = _coco(tmp_path, [dict(bbox=[1, 2, 3, 4])])
    data = json.loads(path.read_text())
    del data['annotations'][0]['category_id']
    path.write_text(json.dumps(data))
    with pytest.raises(
            ValueError,
            match="ann.json: an image or annotation "
            "entry has no field 'category_id'"):
        _build(path)


def test_split_whose_every_image_is_dropped(tmp_path):
    """Every category id outside metainfo.classes: with filter_empty_gt the
    split ends empty -> an error naming the file and the causes."""
    anns = [
        dict(bbox=[10, 10, 20, 20], category_id=7, image_id=i) for i in (1, 2)
    ]
    with pytest.raises(ValueError) as info:
        _build(_coco(tmp_path, anns), filter_empty_gt=True)
    msg = str(info.value)
    assert 'ann.json: every image of the split was dropped' in msg
    assert "'category id not in metainfo.classes': 2" in msg


@pytest.mark.parametrize(
    'cats', [
        [dict(id=2, name='circle'),
         dict(id=1, name='square')],
        [dict(id=2, name='circle')],
    ],
    ids=['other order', 'first class missing'])
def test_labels_that_would_not_match_the_classes(tmp_path, cats):
    """CocoDataset numbers labels in the file's category order: a file
    listing 'circle' first (or lacking 'square') would make label 0 a circle
    while metainfo.classes[0] is 'square' -> an error naming the file and
    both orders; a file lacking only the last class keeps the labels
    aligned and loads."""
    anns = [dict(bbox=[10, 10, 20, 20], category_id=2)]
    path = _coco(tmp_path, anns, cats=cats)
    with pytest.raises(ValueError) as info:
        _build(path)
    msg = str(info.value)
    assert 'ann.json: the labels would not match metainfo.classes' in msg
    assert "gives ['circle'" in msg and "['square', 'circle']" in msg
    assert ("['square'] are not category names" in msg) == (len(cats) == 1)
    # trailing classes absent from the file keep labels aligned
    ok = _build(_coco(tmp_path, anns, cats=[dict(id=1, name='square')]))
    assert len(ok) == 2
