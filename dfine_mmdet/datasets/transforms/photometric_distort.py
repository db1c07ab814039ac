"""RandomPhotometricDistort of the D-FINE training recipe (stage-1 strong aug).

The official pipeline uses ``torchvision.transforms.v2.RandomPhotometricDistort
(p=0.5)`` with torchvision's default ranges.  Each of its six operations is
drawn **independently** with probability ``p``:

1. brightness factor ``b ~ U(0.875, 1.125)``: ``img * b``;
2. contrast factor ``c ~ U(0.5, 1.5)``: blend with the mean grey level,
   applied either before saturation/hue or after them (fair coin, drawn
   every call);
3. saturation factor ``s ~ U(0.5, 1.5)``: blend with the grey image;
4. hue shift ``h ~ U(-0.05, 0.05)`` (fraction of the hue circle);
5. (contrast here when it was not applied first);
6. random permutation of the three colour channels.

MMDetection's :class:`~mmdet.datasets.transforms.PhotoMetricDistortion` is a
different recipe (additive brightness delta of up to 32 levels, hue shift of
up to 18 degrees, one probability for everything, channel swap), so this is
written from the torchvision definition.  The arithmetic follows the
torchvision *tensor* kernels on uint8 images (each operation clamps to
[0, 255] and truncates back to uint8; grey = 0.2989 R + 0.587 G + 0.114 B;
hue shifted in HSV space).  The official pipeline runs the same operations on
PIL images, whose rounding can differ by one grey level.

Input/output: ``results['img']`` HxWx3 uint8 in BGR order (MMDetection's
loader convention); boxes are untouched.
"""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Clamp to [0, 255] and truncate, as torchvision's uint8 kernels do."""
    return np.clip(img, 0, 255).astype(np.uint8)


def _grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma as in torchvision ``rgb_to_grayscale`` (uint8 out)."""
    rgb = rgb.astype(np.float32)
    grey = 0.2989 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return grey.astype(np.uint8)


def adjust_brightness(rgb: np.ndarray, factor: float) -> np.ndarray:
    """``clamp(img * factor)`` (blend with black)."""
    return _to_uint8(rgb.astype(np.float32) * factor)


def adjust_contrast(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image's mean grey level."""
    mean = _grey(rgb).astype(np.float32).mean()
    return _to_uint8(rgb.astype(np.float32) * factor + mean * (1.0 - factor))


def adjust_saturation(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the grey version of the image."""
    grey = _grey(rgb).astype(np.float32)[..., None]
    return _to_uint8(rgb.astype(np.float32) * factor + grey * (1.0 - factor))


def adjust_hue(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Rotate the hue by ``factor`` (in [-0.5, 0.5]) of the hue circle."""
    hsv = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + factor * 360.0, 360.0)
    # float -> uint8 as torchvision's to_dtype(scale=True): x * (256 - 1e-3)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * (256.0 - 1e-3)
    return _to_uint8(out)


@TRANSFORMS.register_module()
class RandomPhotometricDistort(BaseTransform):
    """torchvision-v2 ``RandomPhotometricDistort`` for MMDetection pipelines.

    Required keys: ``img`` (uint8 HxWx3, BGR). Modified keys: ``img``.

    Args:
        brightness (tuple[float]): Brightness factor range.
            Defaults to (0.875, 1.125).
        contrast (tuple[float]): Contrast factor range. Defaults to (0.5, 1.5).
        saturation (tuple[float]): Saturation factor range.
            Defaults to (0.5, 1.5).
        hue (tuple[float]): Hue shift range (fraction of the circle).
            Defaults to (-0.05, 0.05).
        p (float): Probability of *each* operation. Defaults to 0.5
            (the D-FINE value).
    """

    def __init__(self,
                 brightness: Tuple[float, float] = (0.875, 1.125),
                 contrast: Tuple[float, float] = (0.5, 1.5),
                 saturation: Tuple[float, float] = (0.5, 1.5),
                 hue: Tuple[float, float] = (-0.05, 0.05),
                 p: float = 0.5) -> None:
        for name, rng in (('brightness', brightness), ('contrast', contrast),
                          ('saturation', saturation), ('hue', hue)):
            if len(rng) != 2 or rng[0] > rng[1]:
                raise ValueError(f'RandomPhotometricDistort: {name} must be a'
                                 f' (min, max) pair, got {rng}')
        if not -0.5 <= hue[0] <= hue[1] <= 0.5:
            raise ValueError('RandomPhotometricDistort: hue must lie in '
                             f'[-0.5, 0.5], got {hue}')
        if not 0.0 <= p <= 1.0:
            raise ValueError(f'RandomPhotometricDistort: p must be in [0, 1],'
                             f' got {p}')
        self.brightness = tuple(brightness)
        self.contrast = tuple(contrast)
        self.saturation = tuple(saturation)
        self.hue = tuple(hue)
        self.p = p

    def _draw(self, rng: Sequence[float]) -> Optional[float]:
        if np.random.rand() < self.p:
            return float(np.random.uniform(rng[0], rng[1]))
        return None

    def get_params(self) -> dict:
        """Draw the operations (torchvision order and probabilities)."""
        params = dict(
            brightness=self._draw(self.brightness),
            contrast=self._draw(self.contrast),
            saturation=self._draw(self.saturation),
            hue=self._draw(self.hue))
        params['contrast_before'] = bool(np.random.rand() < 0.5)
        params['channel_permutation'] = (
            np.random.permutation(3) if np.random.rand() < self.p else None)
        return params

    @staticmethod
    def apply(rgb: np.ndarray, params: dict) -> np.ndarray:
        """Apply drawn ``params`` to an RGB uint8 image."""
        if params['brightness'] is not None:
            rgb = adjust_brightness(rgb, params['brightness'])
        if params['contrast'] is not None and params['contrast_before']:
            rgb = adjust_contrast(rgb, params['contrast'])
        if params['saturation'] is not None:
            rgb = adjust_saturation(rgb, params['saturation'])
        if params['hue'] is not None:
            rgb = adjust_hue(rgb, params['hue'])
        if params['contrast'] is not None and not params['contrast_before']:
            rgb = adjust_contrast(rgb, params['contrast'])
        if params['channel_permutation'] is not None:
            rgb = rgb[..., params['channel_permutation']]
        return np.ascontiguousarray(rgb)

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise TypeError('RandomPhotometricDistort expects results["img"] '
                            'as a HxWx3 uint8 array, got '
                            f'{img.dtype} {img.shape}')
        params = self.get_params()
        rgb = img[..., ::-1]
        results['img'] = np.ascontiguousarray(
            self.apply(rgb, params)[..., ::-1])
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(brightness={self.brightness}, '
                f'contrast={self.contrast}, saturation={self.saturation}, '
                f'hue={self.hue}, p={self.p})')
