"""Batch multi-scale training of the D-FINE recipe
(``BatchImageCollateFunction``).

In the official recipe the collate function resizes the **whole batch** to a
size drawn per batch (``random.choice``) from::

    generate_scales(base, repeat) =
        [b + 32*i for i in range(n)]            # b = int(base*0.75/32)*32
      + [base] * repeat
      + [t - 32*i for i in range(n)]            # t = int(base*1.25/32)*32
    with n = (base - b) // 32

which for ``base=640`` is ``[480, 512, 544, 576, 608] + [640]*repeat +
[800, 768, 736, 704, 672]``, using ``F.interpolate(images, size=(s, s))``
(default mode **nearest**) on the stacked [0, 1] images, while
``epoch < stop_epoch``.  ``base_size_repeat=None`` disables it (D-FINE-N).
The targets are normalised cxcywh there, so they need no change.

MMDetection's :class:`~mmdet.models.data_preprocessors.BatchSyncRandomResize`
draws sizes from a range at a fixed interval of iterations, keeps the aspect
ratio logic of its ``random_size_range`` and resizes bilinearly, so this is a
separate module with the official semantics.  In MMDetection the boxes are in
pixels, so it also rescales ``gt_instances.bboxes`` and updates ``img_shape``,
``pad_shape`` and ``batch_input_shape`` of every data sample; the boxes
normalised by the new image size are then exactly the official targets.
Nearest interpolation commutes with the per-channel mean/std normalisation, so
running after :class:`~mmdet.models.data_preprocessors.DetDataPreprocessor`'s
normalisation gives the same pixels as the official order.

Each rank draws its own size (as each official process does); nothing is
synchronised across ranks.  :class:`~dfine_mmdet.engine.hooks.DFINEStopAugHook`
turns it off at the stop epoch by setting :attr:`enabled` to False.

Use as a ``batch_augments`` entry of the detector's data preprocessor::

    data_preprocessor=dict(type='DetDataPreprocessor', ...,
        batch_augments=[dict(type='DFINEBatchMultiScaleResize',
                             base_size=640, base_size_repeat=20)])
"""
import random
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from torch import Tensor, nn


def generate_scales(base_size: int, base_size_repeat: int) -> List[int]:
    """The official list of multi-scale training sizes.

    Args:
        base_size (int): Training size (640 in the COCO configs).
        base_size_repeat (int): How often ``base_size`` itself is listed.

    Returns:
        list[int]: Square sizes, e.g. for (640, 3) ``[480, 512, 544, 576, 608,
        640, 640, 640, 800, 768, 736, 704, 672]``.
    """
    low = int(base_size * 0.75 / 32) * 32
    n = (base_size - low) // 32
    high = int(base_size * 1.25 / 32) * 32
    return ([low + i * 32 for i in range(n)] + [base_size] * base_size_repeat +
            [high - i * 32 for i in range(n)])


@MODELS.register_module()
class DFINEBatchMultiScaleResize(nn.Module):
    """Resize a training batch to a random square size (nearest), per batch.

    Args:
        base_size (int): Base training size. Defaults to 640.
        base_size_repeat (int, optional): Repeats of ``base_size`` in the size
            list; ``None`` disables multi-scale (module becomes a no-op).
        scales (list[int], optional): Explicit size list; overrides
            ``base_size``/``base_size_repeat``.
        mode (str): ``F.interpolate`` mode. Defaults to ``'nearest'``
            (official).
    """

    def __init__(self,
                 base_size: int = 640,
                 base_size_repeat: Optional[int] = None,
                 scales: Optional[Sequence[int]] = None,
                 mode: str = 'nearest') -> None:
        super().__init__()
        if scales is not None:
            self.scales = [int(s) for s in scales]
        elif base_size_repeat is not None:
            self.scales = generate_scales(base_size, base_size_repeat)
        else:
            self.scales = None
        if self.scales is not None and (not self.scales
                                        or min(self.scales) <= 0):
            raise ValueError('DFINEBatchMultiScaleResize: scales must be a '
                             f'non-empty list of positive sizes, got '
                             f'{self.scales}')
        self.mode = mode
        self.enabled = True

    def extra_repr(self) -> str:
        return f'scales={self.scales}, mode={self.mode}, ' \
               f'enabled={self.enabled}'

    def forward(
        self, inputs: Tensor, data_samples: List[DetDataSample]
    ) -> Tuple[Tensor, List[DetDataSample]]:
        """Resize ``inputs`` [B, C, H, W] and the boxes of ``data_samples``.

        Returns the batch unchanged when disabled, when no scales are set or
        when the drawn size equals the current one.
        """
        if not self.enabled or self.scales is None:
            return inputs, data_samples
        size = random.choice(self.scales)
        h, w = inputs.shape[-2:]
        if (h, w) == (size, size):
            return inputs, data_samples
        inputs = F.interpolate(inputs, size=(size, size), mode=self.mode)
        sy, sx = size / h, size / w
        for sample in data_samples:
            img_h, img_w = sample.img_shape[:2]
            meta = dict(
                img_shape=(int(round(img_h * sy)), int(round(img_w * sx))),
                batch_input_shape=(size, size))
            if 'pad_shape' in sample:
                pad_h, pad_w = sample.pad_shape[:2]
                meta['pad_shape'] = (int(round(pad_h * sy)),
                                     int(round(pad_w * sx)))
            sample.set_metainfo(meta)
            if 'gt_instances' in sample and \
                    'bboxes' in sample.gt_instances:
                bboxes = sample.gt_instances.bboxes
                scale = bboxes.new_tensor([sx, sy, sx, sy]) if isinstance(
                    bboxes, torch.Tensor) else None
                if scale is not None:
                    sample.gt_instances.bboxes = bboxes * scale
                else:  # mmdet BaseBoxes
                    bboxes.rescale_((sx, sy))
            if 'ignored_instances' in sample and \
                    'bboxes' in sample.ignored_instances:
                ign = sample.ignored_instances.bboxes
                if isinstance(ign, torch.Tensor):
                    sample.ignored_instances.bboxes = ign * ign.new_tensor(
                        [sx, sy, sx, sy])
                else:
                    ign.rescale_((sx, sy))
        return inputs, data_samples
