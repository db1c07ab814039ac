"""CheckedCocoDataset: MMDetection's ``CocoDataset`` that counts every
annotation and image it drops, by cause, and refuses unusable files before
the first iteration.

``CocoDataset.parse_data_info`` silently drops boxes that are outside the
image, have zero/negative area or a side < 1 px, or whose ``category_id``
is not one of ``metainfo.classes``; ``filter_data`` silently drops images
without annotations (``filter_cfg.filter_empty_gt=True``) or smaller than
``filter_cfg.min_size``. This subclass applies the same rules (it calls the
parent for the parsing itself) and reports each drop to
:mod:`dfine_mmdet.datasets.skip_counter` with one of the causes

* ``non-finite (NaN/inf) box coordinates`` (the parent would keep a box
  with an infinite width: ``min(x1 + inf, W)`` clips it),
* ``zero-area or negative box``, ``box side < 1 px``,
* ``box outside the image``,
* ``category id not in metainfo.classes``,
* ``image without annotations (filter_empty_gt)``,
  ``image smaller than filter_cfg.min_size``,

and logs a per-cause summary once the file is parsed (the
``DataSkipReportHook`` repeats the totals at each epoch end). It raises
``ValueError`` naming the file (and field) for: a missing or empty (0 byte)
annotation file, a file that is not JSON, an annotation without
``bbox``/``category_id`` or with a ``bbox`` that is not 4 numbers, a split
left with no image (``'every image of <file> was dropped: ...'``), and a file
whose categories would give labels that are not ``metainfo.classes``'s
indices: ``CocoDataset`` numbers the labels in the file's category order
(``get_cat_ids`` keeps it), so with another order, or a class missing before
the last one, label ``i`` is not ``metainfo.classes[i]`` and every name a
visualiser or a class-aware checkpoint attaches to it is wrong, silently.
"""
import json
import logging
import math
import os.path as osp
from collections import Counter
from typing import List, Union

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.logging import print_log

from .skip_counter import report_skip


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """``CocoDataset`` with counted drops and early errors (module doc)."""

    def load_data_list(self) -> List[dict]:
        ann_file = self.ann_file
        if not osp.isfile(ann_file):
            raise ValueError(f'{ann_file}: annotation file not found '
                             '(check data_root and ann_file)')
        if osp.getsize(ann_file) == 0:
            raise ValueError(f'{ann_file}: empty annotation file (0 bytes)')
        self._drops = Counter()
        self._order_checked = False
        try:
            data_list = super().load_data_list()
        except json.JSONDecodeError as err:
            raise ValueError(f'{ann_file}: not a valid COCO JSON file '
                             f'({err})') from None
        except KeyError as err:
            raise ValueError(f'{ann_file}: an image or annotation entry has '
                             f'no field {err.args[0]!r}') from None
        if self._drops:
            print_log(
                f'{ann_file}: dropped annotations: ' +
                ', '.join(f'{c}: {n}' for c, n in sorted(self._drops.items())),
                logger='current',
                level=logging.WARNING)
        return data_list

    def _drop_cause(self, ann: dict, img_info: dict):
        """Cause string if the parent would drop ``ann`` (or if it is
        non-finite), else ``None``; raises on a malformed entry."""
        where = (f'{self.ann_file}: annotation id {ann.get("id")} of image '
                 f'{img_info.get("file_name")}')
        if 'bbox' not in ann:
            raise ValueError(f"{where} has no field 'bbox'")
        bbox = ann['bbox']
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError(f"{where}: field 'bbox' must be 4 numbers "
                             f'[x, y, w, h], got {bbox!r}')
        try:
            x1, y1, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: field 'bbox' must be 4 numbers, got "
                             f'{bbox!r}') from None
        if not all(math.isfinite(v) for v in (x1, y1, w, h)):
            return 'non-finite (NaN/inf) box coordinates'
        if w <= 0 or h <= 0 or ann.get('area', w * h) <= 0:
            return 'zero-area or negative box'
        inter_w = max(0, min(x1 + w, img_info['width']) - max(x1, 0))
        inter_h = max(0, min(y1 + h, img_info['height']) - max(y1, 0))
        if inter_w * inter_h == 0:
            return 'box outside the image'
        if w < 1 or h < 1:
            return 'box side < 1 px'
        if ann.get('category_id') not in self.cat_ids:
            return 'category id not in metainfo.classes'
        return None

    def _check_label_order(self) -> None:
        """Raise if label ``i`` (the ``i``-th of the file's categories named
        in ``metainfo.classes``, in the file's order) is not
        ``metainfo.classes[i]``; needs ``self.coco`` (alive while the parent
        parses)."""
        classes = list(self.metainfo['classes'])
        names = [c['name'] for c in self.coco.load_cats(self.cat_ids)]
        if names != classes[:len(names)]:
            missing = [c for c in classes if c not in names]
            raise ValueError(
                f'{self.ann_file}: the labels would not match '
                'metainfo.classes: CocoDataset numbers them in the file\'s '
                f'category order, which gives {names} for metainfo.classes '
                f'{classes}' +
                (f' ({missing} are not category names of the file)'
                 if missing else '') +
                '; list metainfo.classes in the order of the file\'s '
                '"categories" (or reorder the file)')

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        if not self._order_checked:
            self._check_label_order()
            self._order_checked = True
        img_info = raw_data_info['raw_img_info']
        kept = []
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False):
                continue  # an explicit ignore flag is the user's choice
            cause = self._drop_cause(ann, img_info)
            if cause is None:
                kept.append(ann)
                continue
            self._drops[cause] += 1
            report_skip(
                cause, f'{self.ann_file}: annotation id {ann.get("id")} of '
                f'image {img_info.get("file_name")}, bbox={ann["bbox"]}, '
                f'category_id={ann.get("category_id")}',
                log=False)
        data_info = super().parse_data_info(
            dict(raw_data_info, raw_ann_info=kept))
        lost = len(kept) - len(data_info['instances'])
        if lost:  # a rule of a future parent that _drop_cause lacks
            report_skip('annotation dropped by CocoDataset (other rule)',
                        f'{self.ann_file}: image {img_info.get("file_name")}',
                        lost)
        return data_info

    def filter_data(self) -> List[dict]:
        valid = super().filter_data()
        if len(valid) != len(self.data_list):
            kept = {id(d) for d in valid}
            min_size = (self.filter_cfg or {}).get('min_size', 0)
            for d in self.data_list:
                if id(d) in kept:
                    continue
                cause = ('image smaller than filter_cfg.min_size' if min(
                    d['width'], d['height']) < min_size else
                         'image without annotations (filter_empty_gt)')
                report_skip(cause, f'{self.ann_file}: {d["img_path"]}')
        if not self.data_list:
            raise ValueError(f'{self.ann_file}: the split has no images '
                             '(empty "images" list)')
        if not valid:
            raise ValueError(
                f'{self.ann_file}: every image of the split was dropped '
                f'({len(self.data_list)} parsed, filter_cfg='
                f'{self.filter_cfg}, dropped annotations: '
                f'{dict(getattr(self, "_drops", {})) or "none"}); '
                'check the category ids against metainfo.classes and the '
                'boxes')
        return valid
