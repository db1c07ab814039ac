"""A truncated, empty or non-PyTorch ``.pth`` given to
``mmdet.apis.init_detector``: one ``CorruptCheckpointError`` naming the file
and what is wrong with it, instead of torch's ``PytorchStreamReader failed
reading zip archive`` / bare ``EOFError`` / ``KeyError: 101``
(``dfine_mmdet/checkpoint/checked_loader.py``; docs/reliability.md).
``tools/test.py``: ``test_tool_checkpoint_errors.py``."""
import os.path as osp
import zipfile

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
N_CFG = osp.join(ROOT, 'configs/dfine/dfine_hgnetv2_n_coco.py')


def _cfg():
    from mmengine.config import Config
    cfg = Config.fromfile(N_CFG)
    cfg.model.backbone.init_cfg = None
    return cfg


@pytest.fixture(scope='module')
def good_ckpt(tmp_path_factory):
    """A complete mmdet-format D-FINE-N checkpoint (random weights)."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    path = str(tmp_path_factory.mktemp('ckpt') / 'dfine_n.pth')
    torch.save({'state_dict': MODELS.build(_cfg().model).state_dict()}, path)
    return path


def _damage(src, dst, how):
    with open(src, 'rb') as f:
        data = f.read()
    if how == 'truncated':
        data = data[:len(data) // 2]
    elif how == 'last_bytes_missing':
        data = data[:-100]
    elif how == 'empty':
        data = b''
    elif how == 'text':
        data = b'version https://git-lfs.github.com/spec/v1\n'
    with open(dst, 'wb') as f:
        f.write(data)
    return dst


@pytest.mark.parametrize('how,expected', [
    ('truncated', 'the file is truncated ('),
    ('last_bytes_missing', 'the file is truncated ('),
    ('empty', 'the file is empty (0 bytes)'),
    ('text', "the file is not a PyTorch checkpoint (neither a zip archive nor "
     "a pickle; it starts with b'vers'"),
])
def test_init_detector_names_the_damaged_file(good_ckpt, tmp_path, how,
                                              expected):
    from mmdet.apis import init_detector

    from dfine_mmdet.checkpoint import CorruptCheckpointError
    bad = _damage(good_ckpt, str(tmp_path / f'{how}.pth'), how)
    with pytest.raises(CorruptCheckpointError) as info:
        init_detector(_cfg(), bad, device='cpu')
    msg = str(info.value)
    assert msg.startswith(f'cannot load checkpoint {bad}: {expected}'), msg
    assert '\n' not in msg and 'torch.load: ' in msg, msg
    # a RuntimeError still, for code that catches torch's error type
    assert isinstance(info.value, RuntimeError)


def test_complete_checkpoint_and_other_errors_are_untouched(
        good_ckpt, tmp_path):
    from mmdet.apis import init_detector
    from mmengine.runner.checkpoint import _load_checkpoint

    from dfine_mmdet.checkpoint import CorruptCheckpointError
    model = init_detector(_cfg(), good_ckpt, device='cpu')
    saved = torch.load(good_ckpt, map_location='cpu')['state_dict']
    got = model.state_dict()
    assert set(saved) == set(got)
    assert all(torch.equal(saved[k], got[k]) for k in saved)

    # a complete zip archive that is not a checkpoint: torch's error kept
    other = str(tmp_path / 'other.pth')
    with zipfile.ZipFile(other, 'w') as zf:
        zf.writestr('readme.txt', 'not a checkpoint')
    with pytest.raises(RuntimeError) as info:
        _load_checkpoint(other, map_location='cpu')
    assert not isinstance(info.value, CorruptCheckpointError)
    # a missing file: MMEngine's FileNotFoundError naming it
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        _load_checkpoint(str(tmp_path / 'missing.pth'))


def test_checkpoint_file_problem_finds_flipped_bytes(good_ckpt, tmp_path):
    """torch.load reads a zip member with a flipped byte without complaint;
    the CRC check (used before a resume) finds it."""
    from dfine_mmdet.checkpoint import checkpoint_file_problem
    with open(good_ckpt, 'rb') as f:
        data = bytearray(f.read())
    with zipfile.ZipFile(good_ckpt) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    # the largest member's data starts after its local header (30 bytes,
    # then the name and the extra field, whose lengths are at bytes 26-29)
    head = info.header_offset
    name_len = int.from_bytes(data[head + 26:head + 28], 'little')
    extra_len = int.from_bytes(data[head + 28:head + 30], 'little')
    offset = head + 30 + name_len + extra_len
    data[offset + 10] ^= 0xFF
    flipped = str(tmp_path / 'flipped.pth')
    with open(flipped, 'wb') as f:
        f.write(bytes(data))
    assert checkpoint_file_problem(good_ckpt) is None
    problem = checkpoint_file_problem(flipped)
    assert problem is not None and problem.startswith(
        f'corrupt (member {info.filename!r} fails its CRC-32 check'), problem
