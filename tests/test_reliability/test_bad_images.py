"""Bad image files: every case a counted skip or an error naming the file,
and boxes that follow the pixels (docs/reliability.md, 'Data' rows)."""
import io

import numpy as np
import pytest
from PIL import Image

from dfine_mmdet.datasets import skip_counter
from dfine_mmdet.datasets.transforms.checked_load_image import \
    CheckedLoadImageFromFile


@pytest.fixture(autouse=True)
def _fresh_counter():
    skip_counter.reset()
    yield
    skip_counter.reset()


def _load(path, on_error='skip', **ann_hw):
    t = CheckedLoadImageFromFile(on_error=on_error)
    return t(dict(img_path=str(path), **ann_hw))


def _jpeg_bytes(arr, **save_kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format='JPEG', quality=95, **save_kw)
    return buf.getvalue()


def _png_bytes(im):
    buf = io.BytesIO()
    im.save(buf, format='PNG')
    return buf.getvalue()


def _rgb(h=24, w=32, seed=0):
    return np.random.RandomState(seed).randint(0, 255, (h, w, 3), np.uint8)


BAD_FILES = {
    'missing': (None, 'missing image file'),
    'zero_byte': (b'', 'zero-byte image file'),
    'corrupt': (b'\x00not an image at all' * 10,
                'unreadable (corrupt or truncated) image file'),
    'truncated_jpeg': ('jpg', 'unreadable (corrupt or truncated) image file'),
    'truncated_png': ('png', 'unreadable (corrupt or truncated) image file'),
}


def _write_bad(tmp_path, name):
    content, cause = BAD_FILES[name]
    path = tmp_path / f'{name}.img'
    if content == 'jpg':
        data = _jpeg_bytes(_rgb(64, 64))
        content = data[:len(data) // 2]
    elif content == 'png':
        data = _png_bytes(Image.fromarray(_rgb(64, 64)))
        content = data[:len(data) // 2]
    if content is not None:
        path.write_bytes(content)
    return path, cause


@pytest.mark.parametrize('name', sorted(BAD_FILES))
def test_bad_image_file_is_a_counted_skip(tmp_path, name):
    path, cause = _write_bad(tmp_path, name)
    assert _load(path) is None
    assert _load(path) is None
    counts, example = skip_counter.collect()
    assert counts == {cause: 2}
    assert str(path) in example[cause]


@pytest.mark.parametrize('name', sorted(BAD_FILES))
def test_bad_image_file_raises_naming_the_file(tmp_path, name):
    path, cause = _write_bad(tmp_path, name)
    with pytest.raises(ValueError) as info:
        _load(path, on_error='raise')
    assert str(path) in str(info.value) and cause in str(info.value)
    assert not skip_counter.collect()[0]


def test_grayscale_png(tmp_path):
    gray = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    (tmp_path / 'g.png').write_bytes(_png_bytes(Image.fromarray(gray, 'L')))
    img = _load(tmp_path / 'g.png')['img']
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], gray)


def test_rgba_png_drops_alpha(tmp_path):
    rgb = _rgb()
    alpha = np.zeros((24, 32, 1), np.uint8)  # fully transparent
    im = Image.fromarray(np.concatenate([rgb, alpha], axis=2), 'RGBA')
    (tmp_path / 'a.png').write_bytes(_png_bytes(im))
    img = _load(tmp_path / 'a.png')['img']
    np.testing.assert_array_equal(img, rgb[..., ::-1])  # BGR, alpha gone


def test_palette_png(tmp_path):
    rgb = _rgb()
    pal = Image.fromarray(rgb).quantize(colors=16)
    assert pal.mode == 'P'
    (tmp_path / 'p.png').write_bytes(_png_bytes(pal))
    img = _load(tmp_path / 'p.png')['img']
    expected = np.asarray(pal.convert('RGB'))[..., ::-1]
    np.testing.assert_array_equal(img, expected)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 24 * 32).astype(np.uint16).reshape(24, 32)
    im = Image.fromarray(values)
    assert im.mode.startswith('I;16')
    (tmp_path / 'd.png').write_bytes(_png_bytes(im))
    img = _load(tmp_path / 'd.png')['img']
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[..., 0], (values >> 8).astype(np.uint8))
    # Pillow's convert('RGB') (MMCV's pillow path) saturates half the image
    assert (img[..., 0] < 255).mean() > 0.9


def _exif_rotated_jpeg(tmp_path, orientation=6):
    """Stored pixels 40 (h) x 60 (w), black with a white block at
    rows 5:15, cols 40:55; EXIF orientation 6 (display = rotate 90 cw)."""
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[5:15, 40:55] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / 'exif.jpg'
    path.write_bytes(_jpeg_bytes(arr, exif=exif.tobytes()))
    return path


def _block_mean(img, box):
    x1, y1, x2, y2 = box
    return img[y1:y2, x1:x2].mean()


def test_exif_rotated_jpeg_annotated_on_stored_pixels(tmp_path):
    """Annotation width/height = stored frame: stored pixels are used, so
    the box (stored frame) covers the white block."""
    path = _exif_rotated_jpeg(tmp_path)
    res = _load(path, height=40, width=60)
    assert res['img'].shape[:2] == (40, 60) and not res['exif_applied']
    assert _block_mean(res['img'], (40, 5, 55, 15)) > 200


def test_exif_rotated_jpeg_annotated_on_displayed_pixels(tmp_path):
    """Annotation width/height = displayed (rotated) frame: EXIF applied;
    the block's box in the displayed frame covers it. Rotating 90 deg
    clockwise maps stored (x, y) -> (H - 1 - y, x): rows 40:55,
    cols 25:35."""
    path = _exif_rotated_jpeg(tmp_path)
    res = _load(path, height=60, width=40)
    assert res['img'].shape[:2] == (60, 40) and res['exif_applied']
    assert _block_mean(res['img'], (25, 40, 35, 55)) > 200
    assert _block_mean(res['img'], (0, 0, 20, 30)) < 30


def test_image_size_differs_from_annotation(tmp_path):
    path = _exif_rotated_jpeg(tmp_path)
    assert _load(path, height=100, width=100) is None
    counts, example = skip_counter.collect()
    assert counts == {'image size differs from the annotation': 1}
    with pytest.raises(
            ValueError, match='exif.jpg.*annotation width x '
            'height 100x100'):
        _load(path, on_error='raise', height=100, width=100)


@pytest.mark.parametrize('fmt', ['jpeg', 'png', 'gray_png'])
def test_ordinary_images_load_as_mmcv_pillow_does(tmp_path, fmt):
    """An ordinary 8-bit RGB JPEG / PNG and a grayscale PNG without EXIF:
    the same array and shapes as the shipped configs' MMCV
    ``LoadImageFromFile(imdecode_backend='pillow')`` (what makes the checked
    loader a drop-in default, docs/reliability.md)."""
    from mmcv.transforms import LoadImageFromFile
    arr = _rgb(24, 32, seed=3)
    path = tmp_path / f'img.{fmt}'
    if fmt == 'jpeg':
        path.write_bytes(_jpeg_bytes(arr))
    elif fmt == 'png':
        path.write_bytes(_png_bytes(Image.fromarray(arr)))
    else:
        path.write_bytes(_png_bytes(Image.fromarray(arr[..., 0])))
    ours = _load(path, height=24, width=32)
    mmcv = LoadImageFromFile(imdecode_backend='pillow')(
        dict(img_path=str(path)))
    assert ours['img'].dtype == mmcv['img'].dtype == np.uint8
    assert ours['img'].shape == mmcv['img'].shape == (24, 32, 3)
    assert np.array_equal(ours['img'], mmcv['img'])
    assert ours['img_shape'] == mmcv['img_shape'] == (24, 32)
    assert ours['ori_shape'] == mmcv['ori_shape']
