"""CheckedLoadImageFromFile: image loading where every bad file is a counted
skip or an error naming the file, and boxes follow the pixels.

MMCV's ``LoadImageFromFile`` raises deep in the decoder on a corrupt or
truncated file (a training run dies at a random iteration), decodes 16-bit
PNGs by clipping (Pillow's ``convert('RGB')`` saturates values > 255 to
white), and always applies the EXIF orientation even when the annotation
was made on the stored (un-rotated) pixels, so the boxes then point at the
wrong place. This transform (own code, decoding with Pillow) does:

* missing / zero-byte / corrupt / truncated file: ``on_error='raise'``
  (default; test pipelines: a test set must not lose images) raises
  ``ValueError('<path>: <cause>')``; ``on_error='skip'`` (training
  pipelines) reports the cause to :mod:`dfine_mmdet.datasets.skip_counter`
  and returns ``None``, so MMEngine's dataset draws another image. The
  shipped configs use it in training pipelines only: MMDetection's
  ``DetInferencer`` finds the loader of a test pipeline by the name
  ``LoadImageFromFile`` (mmdet 3.3 ``_init_pipeline``), so test pipelines
  keep MMCV's transform;
* mode ``L``/``1`` (grayscale) -> gray copied to 3 channels; ``P``
  (palette), ``RGBA``, ``LA``, ``CMYK``, ... -> ``convert('RGB')`` (alpha
  dropped, as the official D-FINE loader does); 16-bit (``I;16*``/``I``)
  -> scaled to 8 bit by ``value >> 8``;
* EXIF orientation: the pixels are put in the frame the annotation was made
  in. If the annotation's ``width``/``height`` (``results['width']``,
  ``results['height']`` from the COCO ``images`` entry) equal the stored
  frame and not the rotated one, the stored pixels are used; otherwise the
  EXIF transpose is applied (what MMCV does). Orientations 2-4 keep the
  shape, so the two frames cannot be told apart; those follow EXIF.
  Either way the boxes (read later by ``LoadAnnotations``) are in the frame
  of the pixels. If neither frame matches the annotation's size the image
  is skipped / refused ('image size differs from the annotation').

Output as MMCV's: ``img`` uint8 [H, W, 3] (BGR by default), ``img_shape``,
``ori_shape``; plus ``exif_orientation`` (int, 1 when absent) and
``exif_applied`` (bool).
"""
import io
from typing import Optional

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmdet.registry import TRANSFORMS
from mmengine import fileio
from PIL import Image, ImageOps

from ..skip_counter import report_skip

_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` with the checks of the module docstring.

    Args:
        on_error (str): ``'raise'`` or ``'skip'`` (count and return
            ``None``). Defaults to ``'raise'``.
        channel_order (str): ``'bgr'`` (MMCV default) or ``'rgb'``.
        **kwargs: ``to_float32``, ``backend_args`` of ``LoadImageFromFile``
            (``color_type`` must be ``'color'``; ``imdecode_backend`` is
            ignored: Pillow always decodes).
    """

    def __init__(self,
                 on_error: str = 'raise',
                 channel_order: str = 'bgr',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if on_error not in ('skip', 'raise'):
            raise ValueError("CheckedLoadImageFromFile: on_error must be "
                             f"'skip' or 'raise', got {on_error!r}")
        if self.color_type != 'color':
            raise ValueError('CheckedLoadImageFromFile: only '
                             "color_type='color' is supported, got "
                             f'{self.color_type!r}')
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f'channel_order must be bgr or rgb, got '
                             f'{channel_order!r}')
        self.on_error = on_error
        self.channel_order = channel_order

    def _fail(self, cause: str, path: str, detail: str = '') -> None:
        where = f'{path}' + (f' ({detail})' if detail else '')
        if self.on_error == 'raise':
            raise ValueError(f'{where}: {cause}')
        report_skip(cause, where)
        return None

    @staticmethod
    def to_rgb_uint8(im: Image.Image) -> np.ndarray:
        """Pillow image of any mode -> uint8 [H, W, 3] RGB."""
        if im.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I'):
            arr = np.asarray(im).astype(np.int64)
            arr = (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
            return np.repeat(arr[..., None], 3, axis=2)
        if im.mode in ('L', '1'):
            arr = np.asarray(im.convert('L'))
            return np.repeat(arr[..., None], 3, axis=2)
        if im.mode != 'RGB':
            im = im.convert('RGB')
        return np.asarray(im)

    def transform(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            return self._fail('missing image file', path)
        if len(data) == 0:
            return self._fail('zero-byte image file', path)
        try:
            im = Image.open(io.BytesIO(data))
            im.load()  # raises on truncated data
            orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
        except Exception as err:  # PIL raises several types
            first = str(err).splitlines()[0] if str(err) else ''
            return self._fail('unreadable (corrupt or truncated) image file',
                              path, f'{type(err).__name__}: {first}')
        stored_hw = (im.height, im.width)
        rotated_hw = stored_hw[::-1] if orientation in _SWAPS_AXES \
            else stored_hw
        ann_hw = (results.get('height'), results.get('width'))
        apply_exif = orientation != 1
        if None not in ann_hw:
            ann_hw = tuple(int(v) for v in ann_hw)
            if ann_hw == stored_hw and ann_hw != rotated_hw:
                apply_exif = False  # annotated on the stored pixels
            elif ann_hw != rotated_hw:
                return self._fail(
                    'image size differs from the annotation', path,
                    f'file {stored_hw[1]}x{stored_hw[0]}, EXIF orientation '
                    f'{orientation}; annotation width x height '
                    f'{ann_hw[1]}x{ann_hw[0]}')
        if apply_exif:
            im = ImageOps.exif_transpose(im)
        img = self.to_rgb_uint8(im)
        if self.channel_order == 'bgr':
            img = img[..., ::-1]
        img = np.ascontiguousarray(img)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        results['exif_orientation'] = orientation
        results['exif_applied'] = apply_exif
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(on_error={self.on_error!r}, '
                f'channel_order={self.channel_order!r}, '
                f'to_float32={self.to_float32})')
