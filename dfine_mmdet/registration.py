"""Every change that importing ``dfine_mmdet`` makes to another package's
global state, in one place.

Each one goes through that package's public registration API.

**Added names** (new entries; nothing of the other package is replaced),
made by decorators when the subpackages are imported:

* MMDetection registries (``mmdet.registry``): ``MODELS``, ``TASK_UTILS``,
  ``HOOKS``, ``TRANSFORMS``, ``DATASETS``, ``OPTIM_WRAPPER_CONSTRUCTORS``,
  ``OPTIM_WRAPPERS`` (``register_module``); :func:`plugin_registrations`
  lists them;
* MMEngine file backends: ``atomic_local``
  (``mmengine.fileio.register_backend``,
  :mod:`dfine_mmdet.engine.hooks.atomic_checkpoint_hook`);
* MMDeploy rewriters for D-FINE's own classes and ONNX symbolics
  (``FUNCTION_REWRITER.register_rewriter``,
  ``SYMBOLIC_REWRITER.register_symbolic``; :mod:`dfine_mmdet.deploy`), only
  when ``mmdeploy`` is importable.

**Replaced entries** (an existing entry of another package now points to a
plugin function), made by :func:`register_all`, which ``dfine_mmdet``
calls once on import:

* MMEngine ``CheckpointLoader`` scheme ``''`` (local files):
  :func:`dfine_mmdet.checkpoint.checked_loader.load_from_local_checked`
  (``CheckpointLoader.register_scheme``);
* MMDeploy rewriter of ``torch.onnx.export``:
  :mod:`dfine_mmdet.deploy.export_shims` (``register_rewriter``; torch >=
  2.9);
* MMDeploy backend ``onnxruntime`` manager:
  :mod:`dfine_mmdet.deploy.backends.onnxruntime` (``BACKEND_MANAGERS.
  register``; when onnxruntime is importable);
* MMDeploy backend ``openvino`` manager and wrapper:
  :mod:`dfine_mmdet.deploy.backends.openvino` (OpenVINO >= 2024);
* MMDeploy backend ``tensorrt`` manager and wrapper:
  :mod:`dfine_mmdet.deploy.backends.tensorrt` (when tensorrt is importable).

MMDeploy logs ``Backend manager of `X` has already been registered.`` (INFO)
for every replaced backend manager; a replacement made on purpose is not
news to a user, so :func:`register_all` drops exactly those records (a
``logging.Filter`` on MMDeploy's logger while it registers) and importing
the plugin prints nothing of its own.
"""
import contextlib
import importlib.util
import logging
from typing import Dict, Iterator, List

__all__ = ['register_all', 'plugin_registrations']

_REGISTERED = False

#: MMDeploy backends whose manager the plugin replaces
REPLACED_BACKENDS = ('onnxruntime', 'openvino', 'tensorrt')


class _DropReRegistration(logging.Filter):
    """Drops MMDeploy's 'Backend manager of `X` has already been
    registered.' records for the backends in ``names``."""

    def __init__(self, names):
        super().__init__()
        self.messages = {
            f'Backend manager of `{n}` has already been registered.'
            for n in names
        }

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.messages


@contextlib.contextmanager
def _quiet_backend_replacement() -> Iterator[None]:
    from mmdeploy.utils import get_root_logger
    logger = get_root_logger()
    flt = _DropReRegistration(REPLACED_BACKENDS)
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def register_all() -> None:
    """Make the replacements of the table above (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from .checkpoint.checked_loader import register_checked_local_loader
    register_checked_local_loader()
    if importlib.util.find_spec('mmdeploy') is not None:
        from .deploy.backends import (apply_mmdeploy_openvino_shim,
                                      apply_mmdeploy_ort_shape_check)
        from .deploy.backends.tensorrt import apply_mmdeploy_tensorrt_shim
        from .deploy.export_shims import register_onnx_export_shim
        register_onnx_export_shim()
        with _quiet_backend_replacement():
            apply_mmdeploy_tensorrt_shim()
            apply_mmdeploy_openvino_shim()
            apply_mmdeploy_ort_shape_check()
    _REGISTERED = True


def plugin_registrations() -> Dict[str, List[str]]:
    """``{registry name: [class names]}`` of what ``dfine_mmdet`` added to
    MMDetection's registries (entries whose class lives in this package)."""
    import mmdet.registry as reg
    out: Dict[str, List[str]] = {}
    for attr in dir(reg):
        registry = getattr(reg, attr)
        module_dict = getattr(registry, 'module_dict', None)
        if not isinstance(module_dict, dict):
            continue
        names = sorted(
            name for name, obj in module_dict.items()
            if getattr(obj, '__module__', '').startswith('dfine_mmdet.'))
        if names:
            out[attr] = names
    return out
