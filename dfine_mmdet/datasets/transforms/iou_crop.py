"""RandomIoUCrop of the D-FINE training recipe (SSD-style crop, stage-1 strong
aug).

The official pipeline uses ``torchvision.transforms.v2.RandomIoUCrop`` (SSD,
arXiv 1512.02325) wrapped with an extra apply-probability ``p=0.8``.  One call:

1. with probability ``1 - p`` return the sample unchanged;
2. loop: draw a minimum IoU from ``sampler_options``
   (default ``[0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]``); ``>= 1.0`` means
   "leave the sample as is";
3. up to ``trials`` (40) times: draw width/height fractions
   ``r ~ U(min_scale, max_scale)^2`` (0.3-1), crop size
   ``(int(W*r0), int(H*r1))``, reject when the crop's w/h is outside
   ``[min_aspect_ratio, max_aspect_ratio]`` (0.5-2); draw the top-left corner
   uniformly (``int((W - w) * u)``); reject an empty crop, a crop that contains
   no box centre (strictly inside), or one whose **largest** IoU with those
   boxes is below the drawn minimum; otherwise crop;
4. if every trial fails, go back to 2.

Cropping shifts the boxes by the corner and clamps them to the crop; boxes
whose centre lies outside the crop are zeroed (torchvision marks them as
degenerate so that the following ``SanitizeBoundingBoxes`` removes them).

MMDetection's :class:`~mmdet.datasets.transforms.MinIoURandomCrop` is not the
same transform: it requires the **smallest** IoU of *all* boxes to pass, uses
50 trials, draws the crop size differently and has no apply-probability.  So
this is written from the torchvision definition.  Random numbers come from
NumPy's global generator (seeded by MMEngine) instead of torch's.

Safety: torchvision loops forever in step 2 while no option succeeds (in
practice it ends as soon as ``1.0`` is drawn).  This implementation does the
same but stops after ``max_rounds`` rounds (default 1000, far beyond the ~7
rounds expected when no crop can be found) and leaves the sample unchanged.
An image without boxes can never satisfy step 3, so it is returned unchanged
right away (the same outcome the loop reaches).

Required keys: ``img``, ``gt_bboxes`` (``HorizontalBoxes``, xyxy pixels),
``img_shape``.  Modified keys: ``img``, ``img_shape``, ``gt_bboxes``.
All other per-instance keys (labels, ignore flags) stay aligned, because
boxes are zeroed, not removed.
"""
from typing import Optional, Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


def box_iou_xyxy(boxes: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """IoU of ``boxes`` [N, 4] with one ``crop`` box [4] (xyxy) -> [N]."""
    lt = np.maximum(boxes[:, :2], crop[None, :2])
    rb = np.minimum(boxes[:, 2:], crop[None, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_c = (crop[2] - crop[0]) * (crop[3] - crop[1])
    return inter / (area_b + area_c - inter)


@TRANSFORMS.register_module()
class RandomIoUCrop(BaseTransform):
    """torchvision-v2 ``RandomIoUCrop`` + D-FINE's apply-probability ``p``.

    Args:
        min_scale (float): Minimum crop side fraction. Defaults to 0.3.
        max_scale (float): Maximum crop side fraction. Defaults to 1.0.
        min_aspect_ratio (float): Minimum crop w/h. Defaults to 0.5.
        max_aspect_ratio (float): Maximum crop w/h. Defaults to 2.0.
        sampler_options (list[float], optional): Minimum-IoU options
            (``>= 1`` = no crop). Defaults to
            ``[0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]``.
        trials (int): Crop attempts per option draw. Defaults to 40.
        p (float): Probability of attempting a crop at all. Defaults to 0.8
            (the D-FINE value).
        max_rounds (int): Safety cap on option draws. Defaults to 1000.
    """

    def __init__(self,
                 min_scale: float = 0.3,
                 max_scale: float = 1.0,
                 min_aspect_ratio: float = 0.5,
                 max_aspect_ratio: float = 2.0,
                 sampler_options: Optional[Sequence[float]] = None,
                 trials: int = 40,
                 p: float = 0.8,
                 max_rounds: int = 1000) -> None:
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError('RandomIoUCrop: need 0 < min_scale <= max_scale'
                             f' <= 1, got {min_scale}, {max_scale}')
        if not 0 < min_aspect_ratio <= max_aspect_ratio:
            raise ValueError('RandomIoUCrop: bad aspect-ratio range '
                             f'({min_aspect_ratio}, {max_aspect_ratio})')
        if not 0.0 <= p <= 1.0:
            raise ValueError(f'RandomIoUCrop: p must be in [0, 1], got {p}')
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.min_aspect_ratio = min_aspect_ratio
        self.max_aspect_ratio = max_aspect_ratio
        self.options = list(sampler_options) if sampler_options is not None \
            else [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
        self.trials = trials
        self.p = p
        self.max_rounds = max_rounds

    def get_crop(self, boxes: np.ndarray, width: int,
                 height: int) -> Optional[dict]:
        """Search a crop; returns ``None`` for "leave as is".

        Args:
            boxes (np.ndarray): [N, 4] xyxy pixel boxes.
            width (int): Image width.
            height (int): Image height.

        Returns:
            dict | None: ``left, top, width, height`` (ints) and ``inside``
            ([N] bool: box centre strictly inside the crop).
        """
        if boxes.shape[0] == 0:
            return None
        cx = 0.5 * (boxes[:, 0] + boxes[:, 2])
        cy = 0.5 * (boxes[:, 1] + boxes[:, 3])
        for _ in range(self.max_rounds):
            min_iou = self.options[np.random.randint(len(self.options))]
            if min_iou >= 1.0:
                return None
            for _ in range(self.trials):
                r = self.min_scale + (self.max_scale -
                                      self.min_scale) * np.random.rand(2)
                new_w = int(width * r[0])
                new_h = int(height * r[1])
                if new_h == 0 or not (self.min_aspect_ratio <= new_w / new_h <=
                                      self.max_aspect_ratio):
                    continue
                r = np.random.rand(2)
                left = int((width - new_w) * r[0])
                top = int((height - new_h) * r[1])
                right, bottom = left + new_w, top + new_h
                if left == right or top == bottom:
                    continue
                inside = (left < cx) & (cx < right) & (top < cy) & (
                    cy < bottom)
                if not inside.any():
                    continue
                crop = np.array([left, top, right, bottom], dtype=np.float64)
                ious = box_iou_xyxy(boxes[inside].astype(np.float64), crop)
                if ious.max() < min_iou:
                    continue
                return dict(
                    left=left,
                    top=top,
                    width=new_w,
                    height=new_h,
                    inside=inside)
        return None

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.p:
            return results
        img = results['img']
        height, width = img.shape[:2]
        gt_bboxes = results.get('gt_bboxes', None)
        boxes = (
            gt_bboxes.numpy() if gt_bboxes is not None else np.zeros(
                (0, 4), np.float32))
        crop = self.get_crop(boxes, width, height)
        if crop is None:
            return results
        left, top = crop['left'], crop['top']
        new_w, new_h = crop['width'], crop['height']
        results['img'] = np.ascontiguousarray(img[top:top + new_h,
                                                  left:left + new_w])
        results['img_shape'] = results['img'].shape[:2]
        # shift + clamp to the crop, zero the boxes whose centre is outside
        gt_bboxes.translate_([-left, -top])
        gt_bboxes.clip_((new_h, new_w))
        outside = torch.from_numpy(~crop['inside'])
        gt_bboxes.tensor[outside] = 0
        results['gt_bboxes'] = gt_bboxes
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_scale={self.min_scale}, '
                f'max_scale={self.max_scale}, min_aspect_ratio='
                f'{self.min_aspect_ratio}, max_aspect_ratio='
                f'{self.max_aspect_ratio}, sampler_options={self.options}, '
                f'trials={self.trials}, p={self.p})')
