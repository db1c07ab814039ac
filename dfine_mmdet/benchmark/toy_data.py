"""A small, deterministic COCO-format detection set for smoke tests and the
toy benchmarks (``python tools/make_toy_dataset.py --out DIR`` writes it).

Layout written under ``--out``::

    train/000000.png ...                       training images
    val/000000.png ...                         validation images
    annotations/instances_train.json           COCO detection annotations
    annotations/instances_val.json

Content: three classes that differ in both colour and shape (``square`` red,
``circle`` green, ``triangle`` blue), drawn on a textured grey background.
Images are 128-192 px on each side (not square, so resizing matters), hold
0-6 objects of every size from tiny (4 px) to large (up to ~85 % of the
shorter side), objects may overlap (pairwise IoU <= 0.3, so each object stays
mostly visible), and about 10 % of the images have no object at all.  Boxes are
the tight boxes of the drawn shapes (``[x, y, w, h]``, pixels, COCO
convention); category ids are 1..3, or the ids given as ``cat_ids``
(one per class, in the order square, circle, triangle; the json's
``categories`` list keeps that order, so ids such as ``40 7 23`` give a list
that is neither contiguous, nor starting at 0 or 1, nor sorted by id: the
awkward case of docs/custom_dataset.md).

The output depends only on ``--seed`` (NumPy ``RandomState``) and the sizes,
so the same command always writes the same files.

Example::

    python tools/make_toy_dataset.py --out data/toy --seed 0
"""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('square', 'circle', 'triangle')
COLORS = ((220, 40, 40), (40, 190, 40), (40, 70, 230))


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / max(union - inter, 1e-9)


def _object_size(rng, short_side):
    """Draw an object side length: tiny / small / medium / large mix."""
    bucket = rng.choice(4, p=(0.15, 0.30, 0.35, 0.20))
    lo, hi = [(4, 8), (8, 24), (24, 56), (56, int(0.85 * short_side))][bucket]
    hi = max(hi, lo + 1)
    return int(rng.randint(lo, hi + 1))


def _draw_object(draw, rng, cls, x1, y1, w, h):
    """Draw one object; returns its tight xyxy box (floats, pixels)."""
    color = tuple(
        int(np.clip(c + rng.randint(-25, 26), 0, 255)) for c in COLORS[cls])
    x2, y2 = x1 + w, y1 + h
    if cls == 0:
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=color)
        return [x1, y1, x2, y2]
    if cls == 1:
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=color)
        return [x1, y1, x2, y2]
    apex = x1 + rng.randint(0, w)
    draw.polygon([(apex, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=color)
    return [x1, y1, x2, y2]


def make_image(rng, cat_ids=(1, 2, 3)):
    width = int(rng.randint(128, 193))
    height = int(rng.randint(128, 193))
    base = rng.randint(90, 170)
    grad = np.linspace(-20, 20, width)[None, :, None]
    noise = rng.normal(0, 8, size=(height, width, 3))
    bg = np.clip(base + grad + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(bg, 'RGB')
    draw = ImageDraw.Draw(img)

    n_obj = 0 if rng.rand() < 0.1 else int(rng.randint(1, 7))
    boxes, anns = [], []
    for _ in range(n_obj):
        for _attempt in range(20):
            side = _object_size(rng, min(width, height))
            aspect = np.exp(rng.uniform(-0.4, 0.4))
            w = int(np.clip(round(side * aspect), 4, width - 2))
            h = int(np.clip(round(side / aspect), 4, height - 2))
            x1 = int(rng.randint(0, width - w + 1))
            y1 = int(rng.randint(0, height - h + 1))
            cand = [x1, y1, x1 + w, y1 + h]
            if all(_iou(cand, b) <= 0.3 for b in boxes):
                break
        else:
            continue
        cls = int(rng.randint(len(CLASSES)))
        box = _draw_object(draw, rng, cls, x1, y1, w, h)
        boxes.append(box)
        anns.append(dict(category_id=cat_ids[cls], box=box))
    return img, anns


def write_split(out, split, num_images, rng, start_ann_id, cat_ids=(1, 2, 3)):
    img_dir = osp.join(out, split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    ann_id = start_ann_id
    for i in range(num_images):
        img, anns = make_image(rng, cat_ids)
        name = f'{i:06d}.png'
        img.save(osp.join(img_dir, name))
        images.append(
            dict(id=i, file_name=name, width=img.width, height=img.height))
        for a in anns:
            x1, y1, x2, y2 = a['box']
            w, h = x2 - x1, y2 - y1
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=i,
                    category_id=a['category_id'],
                    bbox=[float(x1), float(y1),
                          float(w), float(h)],
                    area=float(w * h),
                    iscrowd=0))
            ann_id += 1
    coco = dict(
        info=dict(description=f'dfine-mmdet toy set ({split})'),
        images=images,
        annotations=annotations,
        categories=[
            dict(id=c, name=n, supercategory='shape')
            for c, n in zip(cat_ids, CLASSES)
        ])
    ann_path = osp.join(out, 'annotations', f'instances_{split}.json')
    os.makedirs(osp.dirname(ann_path), exist_ok=True)
    with open(ann_path, 'w') as f:
        json.dump(coco, f)
    return ann_path, len(images), len(annotations), ann_id


def make_toy_dataset(out: str,
                     seed: int = 0,
                     num_train: int = 256,
                     num_val: int = 64,
                     log=print,
                     cat_ids=(1, 2, 3)) -> None:
    """Write the set under ``out`` (see the module docstring); the files
    depend only on the arguments.  ``cat_ids``: the COCO category id of
    each class of ``CLASSES``, in that order (distinct, >= 0)."""
    if len(set(cat_ids)) != len(CLASSES) or min(cat_ids) < 0:
        raise ValueError(f'cat_ids: {len(CLASSES)} distinct ids >= 0 '
                         f'expected (one per class {CLASSES}), got '
                         f'{list(cat_ids)}')
    rng = np.random.RandomState(seed)
    ann_id = 1
    for split, n in (('train', num_train), ('val', num_val)):
        path, n_img, n_ann, ann_id = write_split(out, split, n, rng, ann_id,
                                                 tuple(cat_ids))
        log(f'{split}: {n_img} images, {n_ann} boxes -> {path}')
    log('categories (json order): ' +
        ', '.join(f'{n} (id {c})'
                  for c, n in zip(cat_ids, CLASSES)) + f'; images under {out}')


def ensure_toy_dataset(data_dir: str, seed: int = 0) -> str:
    """``data_dir``, after writing the default-size set there when it holds
    no ``annotations/instances_val.json``."""
    if not osp.isfile(osp.join(data_dir, 'annotations', 'instances_val.json')):
        make_toy_dataset(data_dir, seed=seed)
    return data_dir
