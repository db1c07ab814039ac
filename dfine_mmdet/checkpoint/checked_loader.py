"""A truncated or corrupt checkpoint file: one error naming the file.

Without this, a truncated ``.pth`` given to ``mmdet.apis.init_detector``,
``tools/test.py``, ``load_from`` or ``--resume`` surfaces as torch's
``RuntimeError: PytorchStreamReader failed reading zip archive: failed
finding central directory. This is an internal miniz error...`` (a 0-byte file
as a bare ``EOFError``, a text file as ``KeyError: 101``), deep in a
traceback, and the file name is not in the message.

Hook point (why here): every local checkpoint read of MMEngine goes through
``CheckpointLoader``, whose public ``register_scheme`` API maps path
prefixes to loader functions; local paths use the catch-all prefix ``''``
(``load_from_local``). :func:`register_checked_local_loader` re-registers
``''`` with :func:`load_from_local_checked`, which calls the loader
MMEngine registered there (``load_from_local``, unchanged) and, only when
that raises, inspects the file (:func:`checkpoint_file_problem`). A
file-level problem becomes
:class:`CorruptCheckpointError`; any other error (e.g. a complete file that
is not a checkpoint the model fits) is re-raised untouched. The detector's
``load_state_dict`` pre-hook (:mod:`.guard`) cannot do this: it runs
only after the file was read. MMEngine's files are not changed; the
registration lives in the importing process; it is made by
:func:`dfine_mmdet.registration.register_all` (the list of every change the
plugin makes to other packages' state). Written for MMEngine 0.10.x
(``load_from_local`` registered for the ``''`` prefix). The log line
``Loads checkpoint by local_checked backend`` shows it is active.

:func:`checkpoint_file_problem` is also used by ``AtomicCheckpointHook`` to
check the file ``last_checkpoint`` names before a resume.
"""
import os
import os.path as osp
import pickle
import zipfile
from typing import Optional

from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

from .errors import CorruptCheckpointError

#: first bytes of a zip local file header (PyTorch >= 1.6 checkpoints)
_ZIP_MAGIC = b'PK\x03\x04'


def checkpoint_file_problem(filename: str,
                            check_crc: bool = True) -> Optional[str]:
    """What is wrong with the file as a PyTorch (zip) checkpoint, or None.

    Args:
        filename (str): a local path.
        check_crc (bool): also read every member and compare its CRC-32
            (finds flipped bytes; reads the whole file once).

    Returns:
        str or None: e.g. ``'truncated (12345 bytes; ...)'``; None when the
        file is a complete zip archive with intact members, or when it is
        is a pickle (legacy ``_use_new_zipfile_serialization=False``
        format, which cannot be checked without unpickling it).
    """
    if not osp.exists(filename):
        return 'missing (no such file)'
    size = os.path.getsize(filename)
    if size == 0:
        return 'empty (0 bytes)'
    with open(filename, 'rb') as f:
        head = f.read(4)
    if not zipfile.is_zipfile(filename):
        if head == _ZIP_MAGIC:
            return (f'truncated ({size} bytes; a zip archive whose end, the '
                    'central directory, is missing: an interrupted write or '
                    'an incomplete copy)')
        if head[:1] != b'\x80':  # pickle protocol >= 2 (legacy torch.save)
            return (f'not a PyTorch checkpoint (neither a zip archive nor a '
                    f'pickle; it starts with {head!r}; {size} bytes)')
        return None
    if check_crc:
        try:
            with zipfile.ZipFile(filename) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            return f'corrupt (unreadable zip archive: {err}; {size} bytes)'
        if bad is not None:
            return (f'corrupt (member {bad!r} fails its CRC-32 check; '
                    f'{size} bytes)')
    return None


def _first_sentence(err: BaseException) -> str:
    text = str(err).strip()
    if not text:
        return type(err).__name__
    return text.splitlines()[0].split('. ')[0][:200]


def load_from_local_checked(filename: str, map_location=None):
    """MMEngine's local loader; a damaged file raises
    :class:`CorruptCheckpointError` naming the file instead of torch's
    error.

    Returns:
        dict: the loaded checkpoint.
    """
    try:
        return load_from_local(filename, map_location)
    except (RuntimeError, EOFError, KeyError, ValueError, OSError,
            zipfile.BadZipFile, pickle.UnpicklingError) as err:
        path = osp.expanduser(filename)
        if not osp.isfile(path):
            raise  # MMEngine's FileNotFoundError names the file already
        problem = checkpoint_file_problem(path)
        if problem is None:
            raise
        raise CorruptCheckpointError(
            f'cannot load checkpoint {filename}: the file is {problem}. '
            f'torch.load: {type(err).__name__}: {_first_sentence(err)}'
        ) from err


def register_checked_local_loader() -> None:
    """Register :func:`load_from_local_checked` for local paths (prefix
    ``''``) with MMEngine's public ``CheckpointLoader.register_scheme``."""
    CheckpointLoader.register_scheme('', load_from_local_checked, force=True)
