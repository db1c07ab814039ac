"""Everything about checkpoints, in one room.

* :mod:`.errors`: :class:`CheckpointMismatchError`,
  :class:`CorruptCheckpointError`;
* :mod:`.variants`: the table of official D-FINE sizes and
  :func:`describe` (what a state dict is, from its shapes);
* :mod:`.fit`: :func:`state_dict_fit` (does a state dict fit a model);
* :mod:`.official`: official (Peterande/D-FINE) keys -> plugin keys and
  :func:`convert_checkpoint` (``tools/convert_official_ckpt.py``);
* :mod:`.guard`: the detector's load pre-hook that refuses a checkpoint of
  another size / class count (:func:`install_checkpoint_guard`);
* :mod:`.checked_loader`: MMEngine's local loader with a clear error for a
  truncated file (registered by :mod:`dfine_mmdet.registration`).
"""
from .checked_loader import (checkpoint_file_problem, load_from_local_checked,
                             register_checked_local_loader)
from .errors import CheckpointMismatchError, CorruptCheckpointError
from .fit import StateDictFit, state_dict_fit, tensor_shapes
from .guard import check_state_dict, install_checkpoint_guard
from .official import (convert_checkpoint, convert_state_dict, detect_variant,
                       extract_state_dict, map_key)
from .variants import VARIANTS, Variant, describe, find_variant

__all__ = [
    'CheckpointMismatchError', 'CorruptCheckpointError', 'StateDictFit',
    'VARIANTS', 'Variant', 'check_state_dict', 'checkpoint_file_problem',
    'convert_checkpoint', 'convert_state_dict', 'describe', 'detect_variant',
    'extract_state_dict', 'find_variant', 'install_checkpoint_guard',
    'load_from_local_checked', 'map_key', 'register_checked_local_loader',
    'state_dict_fit', 'tensor_shapes'
]
