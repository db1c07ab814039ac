"""Mosaic of DEIM's Dense O2O (four images on a 2x2 grid, then a random
affine).

DEIM (Huang et al., CVPR 2025, https://github.com/ShihuaHuang95/DEIM,
``engine/data/transforms/mosaic.py``, Apache-2.0) raises the number of targets
per training image with a Mosaic that works as follows:

1. the current image and three others are each resized so that their
   **shorter side is** ``output_size`` (320; ``torchvision`` ``Resize(320)``,
   aspect ratio kept, long side ``int(320 * long / short)``, bilinear);
2. they are pasted, top-left aligned, into the cells of a 2x2 grid whose cell
   size is the largest height and width of the four (canvas
   ``2 max_h x 2 max_w``, filled with ``fill_value``); boxes are shifted by
   the cell offsets;
3. one ``torchvision`` ``RandomAffine`` on the whole canvas (output of the same
   size): rotation ``U(-rotation_range, rotation_range)`` degrees about the
   canvas centre, scale ``U(*scaling_range)``, translation
   ``round(U(-t, t) * size)`` per axis, nearest-neighbour sampling, border
   ``fill_value``; each box becomes the bounding box of its four transformed
   corners, clipped to the canvas (degenerate boxes are removed by the
   ``SanitizeBoundingBoxes`` that follows in the pipeline).

Why not MMDetection's :class:`~mmdet.datasets.transforms.Mosaic` /
:class:`~mmdet.datasets.transforms.CachedMosaic` +
:class:`~mmdet.datasets.transforms.RandomAffine`: mmdet's Mosaic places the
four images around a random centre of a ``2 * img_scale`` canvas and crops
them at that centre, with the long side resized to ``img_scale``; DEIM's
grid is fixed, keeps every image whole and resizes the short side.  mmdet's
RandomAffine rotates about the image origin and translates around half the
output size (designed for YOLOX's negative border), draws shear by default
and filters boxes by area ratio; DEIM's affine is torchvision's (centre
rotation, no shear, clip only).  The resulting target statistics differ, so
this is a separate transform.

Like DEIM's ``use_cache=True`` mode (the one MMDetection's ``CachedMosaic``
also uses, because a pipeline transform cannot read other dataset items
without the :class:`~mmdet.datasets.MultiImageMixDataset` wrapper), the other
three images are drawn, with replacement, from a per-worker cache of the last
``max_cached_images`` resized samples (the current one included); a full
cache drops a random entry except the newest (``random_pop=True``) or the
oldest.  DEIM's configs draw from the whole dataset instead
(``use_cache=False``): the difference is only which other images are mixed.
Under ``MultiImageMixDataset`` (``results['mix_results']`` holding three
samples from :meth:`get_indexes`), those are used instead of the cache.

The sample goes through the mosaic with probability ``prob`` (DEIM: the
``mosaic_prob: 0.5`` of its transform policy).  A mosaic sample sets
``results['dense_o2o_mosaic'] = True``; :class:`SkipAfterMosaic` uses it to
skip the zoom-out / IoU crop for that sample, as DEIM's policy does.
The epoch window in which the mosaic is active is set by
:class:`~dfine_mmdet.engine.hooks.DenseO2OPolicyHook`.

Required keys: ``img`` (H, W, C uint8), ``gt_bboxes`` (``HorizontalBoxes``,
xyxy pixels), ``gt_bboxes_labels``; optional ``gt_ignore_flags``.  Modified:
``img``, ``img_shape``, ``gt_bboxes``, ``gt_bboxes_labels``,
``gt_ignore_flags``; added ``dense_o2o_mosaic``.
"""
import copy
import random
from typing import List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

#: results key set on a sample that went through the mosaic
MOSAIC_FLAG = 'dense_o2o_mosaic'


def short_side_size(h: int, w: int, size: int) -> Tuple[int, int]:
    """(new_h, new_w) of torchvision's ``Resize(size)``: the shorter side
    becomes ``size``, the longer ``int(size * long / short)``."""
    if h <= w:
        return size, int(size * w / h)
    return int(size * h / w), size


def affine_matrix(width: int, height: int, angle: float, scale: float, tx: int,
                  ty: int) -> np.ndarray:
    """2x3 forward matrix: rotate by ``angle`` degrees (counter-clockwise in
    image coordinates) and scale about the canvas centre, then translate by
    ``(tx, ty)`` pixels."""
    m = cv2.getRotationMatrix2D((width * 0.5, height * 0.5), angle, scale)
    m[0, 2] += tx
    m[1, 2] += ty
    return m


def affine_boxes(boxes: np.ndarray, m: np.ndarray, width: int,
                 height: int) -> np.ndarray:
    """Bounding boxes ``[N, 4]`` (xyxy) of the four transformed corners of
    each box, clipped to ``[0, width] x [0, height]``."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32)
    x0, y0, x1, y1 = boxes.T
    corners = np.stack([
        np.stack([x0, y0], -1),
        np.stack([x1, y0], -1),
        np.stack([x0, y1], -1),
        np.stack([x1, y1], -1)
    ], 1)  # [N, 4, 2]
    pts = corners @ m[:, :2].T + m[:, 2]
    out = np.concatenate([pts.min(1), pts.max(1)], -1)
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out.astype(np.float32)


@TRANSFORMS.register_module()
class DEIMMosaic(BaseTransform):
    """DEIM's Dense O2O Mosaic (see the module docstring).

    Args:
        output_size (int): Shorter side of each of the four images. Default
            320.
        rotation_range (float): Max rotation in degrees. Default 10 (DEIM's
            config; its class default is 0).
        translation_range (Sequence[float]): Max translation as a fraction of
            the canvas width / height. Default (0.1, 0.1).
        scaling_range (Sequence[float]): Scale range. Default (0.5, 1.5).
        fill_value (int): Canvas and border fill. Default 0 (DEIM's config).
        prob (float): Probability of applying it to a sample. Default 0.5
            (DEIM's ``mosaic_prob``).
        max_cached_images (int): Cache length. Default 50.
        random_pop (bool): Drop a random (not the newest) entry from a full
            cache; else the oldest. Default True.
    """

    def __init__(self,
                 output_size: int = 320,
                 rotation_range: float = 10.0,
                 translation_range: Sequence[float] = (0.1, 0.1),
                 scaling_range: Sequence[float] = (0.5, 1.5),
                 fill_value: int = 0,
                 prob: float = 0.5,
                 max_cached_images: int = 50,
                 random_pop: bool = True) -> None:
        if output_size <= 0:
            raise ValueError(
                f'DEIMMosaic: output_size must be > 0, got {output_size}')
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'DEIMMosaic: prob must be in [0, 1], got {prob}')
        if max_cached_images < 4:
            raise ValueError('DEIMMosaic: max_cached_images must be >= 4, '
                             f'got {max_cached_images}')
        if len(scaling_range) != 2 or not 0 < scaling_range[0] <= \
                scaling_range[1]:
            raise ValueError('DEIMMosaic: scaling_range must be (lo, hi) with '
                             f'0 < lo <= hi, got {scaling_range}')
        self.output_size = output_size
        self.rotation_range = float(rotation_range)
        self.translation_range = tuple(float(t) for t in translation_range)
        self.scaling_range = tuple(float(s) for s in scaling_range)
        self.fill_value = fill_value
        self.prob = prob
        self.max_cached_images = max_cached_images
        self.random_pop = random_pop
        self.cache: List[dict] = []

    # ----------------------------------------------------------- helpers
    def get_indexes(self, dataset) -> List[int]:
        """Three random dataset indexes (``MultiImageMixDataset`` use)."""
        return random.choices(range(len(dataset)), k=3)

    def _resized(self, results: dict) -> dict:
        """Image and instances of ``results`` resized to the short side."""
        img = results['img']
        h, w = img.shape[:2]
        new_h, new_w = short_side_size(h, w, self.output_size)
        img = mmcv.imresize(
            img, (new_w, new_h), interpolation='bilinear', backend='pillow')
        boxes = results['gt_bboxes']
        boxes = boxes.numpy() if hasattr(boxes, 'numpy') else np.asarray(
            boxes, dtype=np.float32)
        boxes = boxes.reshape(-1, 4).astype(np.float32) * np.array(
            [new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)
        labels = np.asarray(results['gt_bboxes_labels'], dtype=np.int64)
        ignore = results.get('gt_ignore_flags')
        ignore = np.zeros(len(labels), dtype=bool) if ignore is None else \
            np.asarray(ignore, dtype=bool)
        return dict(img=img, boxes=boxes, labels=labels, ignore=ignore)

    def _others(self, results: dict, current: dict) -> List[dict]:
        mix = results.get('mix_results')
        if mix:
            if len(mix) != 3:
                raise ValueError('DEIMMosaic: mix_results must hold 3 '
                                 f'samples, got {len(mix)}')
            return [self._resized(r) for r in mix]
        self.cache.append(current)
        if len(self.cache) > self.max_cached_images:
            index = random.randint(0, len(self.cache) - 2) \
                if self.random_pop else 0
            self.cache.pop(index)
        return [copy.deepcopy(s) for s in random.choices(self.cache, k=3)]

    def _random_affine(self, width: int, height: int) -> np.ndarray:
        angle = random.uniform(-self.rotation_range, self.rotation_range)
        max_dx = self.translation_range[0] * width
        max_dy = self.translation_range[1] * height
        tx = int(round(random.uniform(-max_dx, max_dx)))
        ty = int(round(random.uniform(-max_dy, max_dy)))
        scale = random.uniform(*self.scaling_range)
        return affine_matrix(width, height, angle, scale, tx, ty)

    def mosaic(self,
               samples: List[dict],
               matrix: Optional[np.ndarray] = None) -> dict:
        """Grid of four resized samples, then the affine ``matrix`` (a
        random one when ``None``).  Returns ``img``, ``boxes``, ``labels``,
        ``ignore``."""
        max_h = max(s['img'].shape[0] for s in samples)
        max_w = max(s['img'].shape[1] for s in samples)
        channels = samples[0]['img'].shape[2:]
        canvas = np.full(
            (2 * max_h, 2 * max_w) + channels,
            self.fill_value,
            dtype=samples[0]['img'].dtype)
        offsets = [(0, 0), (max_w, 0), (0, max_h), (max_w, max_h)]
        boxes = []
        for s, (ox, oy) in zip(samples, offsets):
            h, w = s['img'].shape[:2]
            canvas[oy:oy + h, ox:ox + w] = s['img']
            boxes.append(s['boxes'] + np.array([ox, oy, ox, oy], np.float32))
        height, width = canvas.shape[:2]
        if matrix is None:
            matrix = self._random_affine(width, height)
        fill = self.fill_value
        img = cv2.warpAffine(
            canvas,
            matrix, (width, height),
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(fill, fill, fill))
        if img.ndim == 2 and canvas.ndim == 3:
            img = img[..., None]
        return dict(
            img=img,
            boxes=affine_boxes(np.concatenate(boxes), matrix, width, height),
            labels=np.concatenate([s['labels'] for s in samples]),
            ignore=np.concatenate([s['ignore'] for s in samples]))

    # --------------------------------------------------------- transform
    def transform(self, results: dict) -> dict:
        """Mosaic with probability ``prob`` (see the module docstring)."""
        if self.prob < 1.0 and random.random() > self.prob:
            return results
        current = self._resized(results)
        others = self._others(results, current)
        out = self.mosaic([copy.deepcopy(current)] + others)
        results['img'] = out['img']
        results['img_shape'] = out['img'].shape[:2]
        results['gt_bboxes'] = HorizontalBoxes(out['boxes'])
        results['gt_bboxes_labels'] = out['labels']
        results['gt_ignore_flags'] = out['ignore']
        results[MOSAIC_FLAG] = True
        results.pop('mix_results', None)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(output_size={self.output_size}, '
                f'rotation_range={self.rotation_range}, translation_range='
                f'{self.translation_range}, scaling_range={self.scaling_range}'
                f', fill_value={self.fill_value}, prob={self.prob}, '
                f'max_cached_images={self.max_cached_images}, random_pop='
                f'{self.random_pop})')


@TRANSFORMS.register_module()
class SkipAfterMosaic(BaseTransform):
    """Run ``transforms`` only on samples that did not go through
    :class:`DEIMMosaic`.

    DEIM's policy never combines Mosaic with ``RandomZoomOut`` /
    ``RandomIoUCrop`` in one sample; wrap those two (``Expand`` and
    ``RandomIoUCrop`` here) in this transform.

    Args:
        transforms (list[dict | callable]): The wrapped transforms.
    """

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = [
            TRANSFORMS.build(t) if isinstance(t, dict) else t
            for t in transforms
        ]

    def transform(self, results: dict) -> Optional[dict]:
        if results.get(MOSAIC_FLAG, False):
            return results
        for t in self.transforms:
            results = t(results)
            if results is None:  # a transform asked to skip the sample
                return None
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.transforms})'
