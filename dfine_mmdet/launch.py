"""The launcher of ``tools/train.py`` and ``tools/test.py``.

Runs MMDetection's own entry script
(``<site-packages>/mmdet/.mim/tools/<name>.py``, the same file
``mim train mmdetection`` runs) in this process. Plugin configs carry
``custom_imports = dict(imports=['dfine_mmdet'], allow_failed_imports=False)``;
the plugin is imported here as well (this module is part of it).

CPU distributed runs (``torchrun ... tools/train.py CFG --launcher pytorch``
without CUDA) need two fixes that MMEngine 0.10.x does not make itself:

1. ``mmengine.dist.init_dist`` always calls
   ``torch.cuda.set_device(local_rank)``, which raises on CPU-only torch
   builds. We initialise a ``gloo`` process group first; the Runner then skips
   ``init_dist`` because ``torch.distributed.is_initialized()``.
2. The Runner wraps the model with ``device_ids=[LOCAL_RANK]``, which
   ``DistributedDataParallel`` rejects for CPU modules. We append
   ``--cfg-options model_wrapper_cfg.device_ids=None`` (merged with the
   config's own ``model_wrapper_cfg``).

SyncBN layers still need ``norm_cfg=dict(type='BN')`` in the config on CPU.

A checkpoint that does not fit the model (``CheckpointMismatchError`` of the
plugin's checkpoint guard) or a truncated / empty / corrupt checkpoint
(``CorruptCheckpointError`` of :mod:`dfine_mmdet.checkpoint.checked_loader`,
or torch's own error from a loader that bypasses it) ends the tool with one
``error: ...`` message and exit status 1 instead of a traceback
(``DFINE_TRACEBACK=1`` shows the traceback).
"""
import os
import os.path as osp
import runpy
import sys


def _launcher(argv):
    for i, arg in enumerate(argv):
        if arg == '--launcher' and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith('--launcher='):
            return arg.split('=', 1)[1]
    return 'none'


def _prepare_cpu_ddp(argv):
    """Return argv, pre-initialising a gloo process group for CPU DDP runs."""
    if _launcher(argv) != 'pytorch' or 'RANK' not in os.environ:
        return argv
    import torch
    import torch.distributed as dist
    if torch.cuda.is_available():
        return argv
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    return argv + ['--cfg-options', 'model_wrapper_cfg.device_ids=None']


def mmdet_tool_path(name):
    """Path of MMDetection's packaged ``tools/<name>.py`` (what ``mim``
    runs)."""
    import mmdet
    pkg_root = osp.dirname(mmdet.__file__)
    for candidate in (osp.join(pkg_root, '.mim', 'tools', f'{name}.py'),
                      osp.join(osp.dirname(pkg_root), 'tools', f'{name}.py')):
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f'MMDetection tools/{name}.py not found under {pkg_root}/.mim/tools; '
        'install MMDetection from a wheel/sdist that ships its .mim folder '
        '(onedl-mmdetection does), e.g. run: bash tools/setup_env.sh')


def _known_error(err, name, argv):
    """One-line message for errors whose traceback tells a user nothing more
    (a checkpoint that does not fit, a truncated checkpoint); else None."""
    import pickle

    from .checkpoint import CheckpointMismatchError, CorruptCheckpointError
    if isinstance(err, (CheckpointMismatchError, CorruptCheckpointError)):
        # the plugin's checkpoint guard / checked checkpoint loader: the
        # message names the file and the problem
        return str(err)
    text = str(err).strip()
    if (isinstance(err, (EOFError, pickle.UnpicklingError))
            or (isinstance(err, RuntimeError)
                and 'PytorchStreamReader failed' in text)):
        ckpt = argv[1] if name == 'test' and len(argv) > 1 else \
            'the checkpoint'
        first = text.splitlines()[0] if text else type(err).__name__
        return (f'cannot read {ckpt} as a PyTorch checkpoint (truncated or '
                f'another format?): {first}')
    return None


def run_mmdet_tool(name):
    argv = _prepare_cpu_ddp(sys.argv[1:])
    script = mmdet_tool_path(name)
    sys.argv = [script] + argv
    try:
        runpy.run_path(script, run_name='__main__')
    except Exception as err:  # noqa: BLE001 - re-raised unless known
        msg = _known_error(err, name, argv)
        if msg is None or os.environ.get('DFINE_TRACEBACK'):
            raise
        print(f'error: {msg}', file=sys.stderr)
        sys.exit(1)
