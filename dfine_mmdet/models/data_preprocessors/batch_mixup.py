"""Batch-level MixUp of DEIM's Dense O2O (``BatchImageCollateFunction``).

DEIM (Huang et al., CVPR 2025, https://github.com/ShihuaHuang95/DEIM,
``engine/data/dataloader.py``, Apache-2.0) mixes whole batches in its collate
function: with probability ``mixup_prob`` (0.5) and while the epoch lies in
``mixup_epochs = [start, stop)``, it draws ``beta = round(U(0.45, 0.55), 6)``
and sets ::

    images = beta * images + (1 - beta) * images.roll(1, dims=0)

so image ``i`` is mixed with image ``i - 1`` (image 0 with the last one), and
the targets of image ``i`` become its own boxes and labels **followed by**
those of image ``i - 1``.  The mixing ratio DEIM records per box (``mixup``)
is not used by its criterion, so it is not kept here.

This module is that step as a ``batch_augments`` entry of MMDetection's
:class:`~mmdet.models.data_preprocessors.DetDataPreprocessor` (the place
where MMDetection works on whole batches).  It runs after the preprocessor's
mean/std normalisation, which commutes with the convex combination (the
weights sum to 1), so the pixels equal DEIM's order (mix the ``[0, 1]``
images, then normalise).  Put it **before**
:class:`~dfine_mmdet.models.data_preprocessors.DFINEBatchMultiScaleResize`,
as DEIM mixes before its multi-scale resize.  Boxes are in pixels here; the
D-FINE pipelines resize every training image to the same size, so image
``i - 1``'s boxes are valid in image ``i``.  ``gt_instances`` are
concatenated with :meth:`InstanceData.cat` (every per-instance field, e.g.
``ignore_flags``, follows).

MMDetection's :class:`~mmdet.datasets.transforms.MixUp` is a per-sample
pipeline transform with random rescaling, flipping and cropping of the second
image and a fixed ratio 0.5; it is not DEIM's batch operation.

The epoch window is set by
:class:`~dfine_mmdet.engine.hooks.DenseO2OPolicyHook` through
:attr:`enabled` (``False`` until the hook turns it on).

Use::

    data_preprocessor=dict(type='DetDataPreprocessor', ...,
        batch_augments=[dict(type='DEIMBatchMixUp', prob=0.5), ...])
"""
import random
from typing import List, Sequence, Tuple

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import Tensor, nn


@MODELS.register_module()
class DEIMBatchMixUp(nn.Module):
    """DEIM's batch MixUp (see the module docstring).

    Args:
        prob (float): Probability of mixing a batch. Default 0.5.
        beta_range (Sequence[float]): Range of the weight of the batch
            itself (the rolled batch gets ``1 - beta``). Default
            (0.45, 0.55).
        enabled (bool): Initial state; :class:`DenseO2OPolicyHook` sets it
            per epoch. Default False.
    """

    def __init__(self,
                 prob: float = 0.5,
                 beta_range: Sequence[float] = (0.45, 0.55),
                 enabled: bool = False) -> None:
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(
                f'DEIMBatchMixUp: prob must be in [0, 1], got {prob}')
        if len(beta_range) != 2 or not 0 <= beta_range[0] <= beta_range[1] \
                <= 1:
            raise ValueError('DEIMBatchMixUp: beta_range must be (lo, hi) '
                             f'with 0 <= lo <= hi <= 1, got {beta_range}')
        self.prob = prob
        self.beta_range = tuple(float(b) for b in beta_range)
        self.enabled = enabled

    def extra_repr(self) -> str:
        return f'prob={self.prob}, beta_range={self.beta_range}, ' \
               f'enabled={self.enabled}'

    @staticmethod
    def mix(inputs: Tensor, data_samples: List[DetDataSample],
            beta: float) -> Tuple[Tensor, List[DetDataSample]]:
        """Mix ``inputs`` [B, C, H, W] with weight ``beta`` with the batch
        rolled by one, and append each previous image's instances."""
        mixed = inputs * beta + inputs.roll(shifts=1, dims=0) * (1.0 - beta)
        previous = [s.gt_instances for s in data_samples]
        previous = previous[-1:] + previous[:-1]
        for sample, prev in zip(data_samples, previous):
            sample.gt_instances = InstanceData.cat([sample.gt_instances, prev])
        return mixed, data_samples

    def forward(
        self, inputs: Tensor, data_samples: List[DetDataSample]
    ) -> Tuple[Tensor, List[DetDataSample]]:
        """Mix the batch with probability ``prob`` when enabled."""
        if not self.enabled or len(data_samples) < 2:
            return inputs, data_samples
        if random.random() >= self.prob:
            return inputs, data_samples
        beta = round(random.uniform(*self.beta_range), 6)
        return self.mix(inputs, data_samples, beta)
