"""SanitizeBoundingBoxes of the D-FINE training recipe.

The official pipeline calls ``torchvision.transforms.v2.SanitizeBoundingBoxes
(min_size=1)`` after the IoU crop and again after the final resize.  It keeps a
box (xyxy pixels, image W x H) iff::

    x2 - x1 >= min_size  and  y2 - y1 >= min_size  and  all coords >= 0
    and x1, x2 <= W  and  y1, y2 <= H

and removes the labels of dropped boxes with them; an image may end up with
no boxes (it is kept - D-FINE trains on zero-GT images).

MMDetection's :class:`~mmdet.datasets.transforms.FilterAnnotations` differs:
it keeps ``w > min`` (strict), has no bounds check, and with its default
``keep_empty=True`` returns ``None`` for an image left without boxes (the
dataset then draws another image).  So this is written from the torchvision
definition.

``drop_ignored=True`` additionally removes instances flagged in
``gt_ignore_flags`` (COCO ``iscrowd=1``).  The official COCO loader drops crowd
boxes before any transform, so put one ``SanitizeBoundingBoxes(drop_ignored=
True)`` right after ``LoadAnnotations`` to match it (MMDetection would
otherwise keep crowd boxes in the pipeline, where they influence the IoU crop,
and only move them to ``ignored_instances`` at packing time).

``log_dropped=True`` makes the drops visible: each invalid box (not a crowd
box) is counted in ``num_dropped`` and reported through the current MMEngine
logger with the image path, at the 1st, 2nd, 4th, 8th, ... drop of the
process (counts are per dataloader worker), and counted in
:mod:`dfine_mmdet.datasets.skip_counter` under the cause ``'invalid box
(SanitizeBoundingBoxes)'`` (summed over workers by
``DataSkipReportHook``). The training configs set it on the first instance,
right after ``LoadAnnotations``, where a dropped box means an invalid
annotation; after the crops, dropping boxes is the augmentation
working as intended and is not logged.

Required keys: ``gt_bboxes`` (``HorizontalBoxes``), ``img_shape``.
Modified keys: ``gt_bboxes`` and every per-instance key present
(``gt_bboxes_labels``, ``gt_ignore_flags``, ``gt_masks``).
"""
import logging

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmengine.logging import print_log

from ..skip_counter import report_skip

#: per-instance keys filtered together with the boxes
INSTANCE_KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags',
                 'gt_masks')


@TRANSFORMS.register_module()
class SanitizeBoundingBoxes(BaseTransform):
    """Remove degenerate, too small and out-of-image boxes (torchvision v2).

    Args:
        min_size (float): Minimum box width and height in pixels.
            Defaults to 1 (the D-FINE value).
        drop_ignored (bool): Also drop instances whose ``gt_ignore_flags`` is
            True (crowd boxes). Defaults to False.
        log_dropped (bool): Count invalid boxes in ``num_dropped`` and log
            them (see the module docstring). Defaults to False.
    """

    def __init__(self,
                 min_size: float = 1.0,
                 drop_ignored: bool = False,
                 log_dropped: bool = False) -> None:
        if min_size < 0:
            raise ValueError('SanitizeBoundingBoxes: min_size must be >= 0, '
                             f'got {min_size}')
        self.min_size = min_size
        self.drop_ignored = drop_ignored
        self.log_dropped = log_dropped
        self.num_dropped = 0  # invalid boxes dropped by this process
        self._next_report = 1

    def valid_mask(self, boxes: np.ndarray, height: int,
                   width: int) -> np.ndarray:
        """[N] bool mask of boxes to keep (``boxes`` [N, 4] xyxy pixels)."""
        ws = boxes[:, 2] - boxes[:, 0]
        hs = boxes[:, 3] - boxes[:, 1]
        valid = (ws >= self.min_size) & (hs >= self.min_size)
        valid &= (boxes >= 0).all(axis=1)
        valid &= (boxes[:, 0] <= width) & (boxes[:, 2] <= width)
        valid &= (boxes[:, 1] <= height) & (boxes[:, 3] <= height)
        return valid

    def transform(self, results: dict) -> dict:
        if 'gt_bboxes' not in results:
            return results
        height, width = results['img_shape'][:2]
        keep = self.valid_mask(results['gt_bboxes'].numpy(), height, width)
        if self.log_dropped and not keep.all():
            self._report(int((~keep).sum()), results, height, width)
        if self.drop_ignored and 'gt_ignore_flags' in results:
            keep &= ~results['gt_ignore_flags'].astype(bool)
        if keep.all():
            return results
        for key in INSTANCE_KEYS:
            if key in results:
                results[key] = results[key][keep]
        return results

    def _report(self, num: int, results: dict, height: int,
                width: int) -> None:
        self.num_dropped += num
        report_skip(
            'invalid box (SanitizeBoundingBoxes)',
            f'{results.get("img_path", "an image")} ({width}x'
            f'{height})',
            num,
            log=False)
        if self.num_dropped < self._next_report:
            return
        while self._next_report <= self.num_dropped:
            self._next_report *= 2
        print_log(
            f'SanitizeBoundingBoxes: dropped {num} invalid box(es) (width or '
            f'height < {self.min_size} px, or outside the {width}x{height} '
            f'image) of {results.get("img_path", "an image")}; '
            f'{self.num_dropped} dropped so far in this process',
            logger='current',
            level=logging.WARNING)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_size={self.min_size}, '
                f'drop_ignored={self.drop_ignored}, '
                f'log_dropped={self.log_dropped})')
