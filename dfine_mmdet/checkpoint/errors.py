"""The two checkpoint errors of the plugin (one definition each).

* :class:`CheckpointMismatchError`: a readable checkpoint whose weights do
  not fit the model (another D-FINE size or class count, an unconverted
  official file, official entries that disagree). Raised by the load guard
  (:mod:`.guard`) and the official converter (:mod:`.official`).
* :class:`CorruptCheckpointError`: a file that cannot be read as a PyTorch
  checkpoint (truncated, empty, corrupt); raised by the checked local loader
  (:mod:`.checked_loader`) and ``AtomicCheckpointHook``.

``tools/train.py`` / ``tools/test.py`` print either as one ``error: ...``
line (see :mod:`dfine_mmdet.launch`).
"""


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model built from the config."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file that is truncated, empty or corrupt."""
