"""dfine_mmdet: D-FINE (arXiv 2410.13842) as an MMDetection 3.x plugin.

Importing this package registers every component of the plugin into
MMDetection's registries (default scope ``mmdet``), so a config only needs::

    custom_imports = dict(imports=['dfine_mmdet'], allow_failed_imports=False)

The MMDeploy rewriters in :mod:`dfine_mmdet.deploy` are imported as well when
``mmdeploy`` is importable. Everything the import changes in other packages
is listed in :mod:`dfine_mmdet.registration`.
"""
import importlib.util

from . import checkpoint  # noqa: F401  (errors, guard, official conversion)
from . import datasets  # noqa: F401  (registers TRANSFORMS)
from . import engine  # noqa: F401  (registers HOOKS / optimizer constructors)
from . import models  # noqa: F401  (registers MODELS / TASK_UTILS)
from .version import __version__

if importlib.util.find_spec('mmdeploy') is not None:
    from . import deploy  # noqa: F401  (registers MMDeploy rewriters)

from .registration import register_all

register_all()

__all__ = ['__version__']
