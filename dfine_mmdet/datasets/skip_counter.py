"""Data skip counter: one place where the dataset and the transforms report
every sample / box / image they drop, with its cause.

Reporters call :func:`report_skip(cause, where)`; nothing is dropped
silently. :class:`~dfine_mmdet.engine.hooks.DataSkipReportHook` calls
:func:`collect` at the end of each epoch and logs one line per cause with
its count.

Dataloader workers are separate processes, so counts cannot live in one
Python object: when the environment variable ``DFINE_DATA_SKIP_DIR`` is set
(the hook sets it in ``before_run``, before any worker is started, and the
workers inherit it), a process other than the one that set it rewrites
``<dir>/<pid>.json`` with its cumulative counts on every report, and
:func:`collect` sums those files with the counts of its own process. A
forked worker starts from zero (the counts it inherited from the parent are
the parent's, which the parent reports itself).
"""
import json
import logging
import os
import os.path as osp
from collections import Counter
from typing import Dict, Optional, Tuple

from mmengine.logging import print_log

ENV_DIR = 'DFINE_DATA_SKIP_DIR'
ENV_MAIN_PID = 'DFINE_DATA_SKIP_MAIN_PID'

_state = {'pid': os.getpid(), 'counts': Counter(), 'example': {}}


def _own() -> dict:
    if _state['pid'] != os.getpid():  # a forked worker: start from zero
        _state.update(pid=os.getpid(), counts=Counter(), example={})
    return _state


def report_skip(cause: str,
                where: str,
                num: int = 1,
                log: bool = True) -> None:
    """Count ``num`` items dropped for ``cause`` (e.g. ``'missing image
    file'``); ``where`` names the file (and field) for the log. The first
    drop of each cause in a process is logged as a warning with ``where``."""
    state = _own()
    first = cause not in state['counts']
    state['counts'][cause] += num
    state['example'].setdefault(cause, where)
    if log and first:
        print_log(
            f'data skip ({cause}): {where}; counted, totals are '
            'logged by DataSkipReportHook at the end of each epoch',
            logger='current',
            level=logging.WARNING)
    out_dir = os.environ.get(ENV_DIR)
    if out_dir and os.environ.get(ENV_MAIN_PID) != str(os.getpid()):
        path = osp.join(out_dir, f'{os.getpid()}.json')
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump({
                'counts': state['counts'],
                'example': state['example']
            }, f)
        os.replace(tmp, path)


def collect(out_dir: Optional[str] = None) -> Tuple[Counter, Dict[str, str]]:
    """Counts of this process plus those the workers wrote to ``out_dir``
    (defaults to ``$DFINE_DATA_SKIP_DIR``): ``(Counter(cause -> n),
    {cause: first example})``."""
    state = _own()
    counts = Counter(state['counts'])
    example = dict(state['example'])
    out_dir = out_dir or os.environ.get(ENV_DIR)
    if out_dir and osp.isdir(out_dir):
        for name in sorted(os.listdir(out_dir)):
            if not name.endswith('.json') or name == f'{os.getpid()}.json':
                continue
            with open(osp.join(out_dir, name)) as f:
                data = json.load(f)
            counts.update(data['counts'])
            for cause, where in data['example'].items():
                example.setdefault(cause, where)
    return counts, example


def reset() -> None:
    """Forget this process's counts (tests)."""
    _state.update(pid=os.getpid(), counts=Counter(), example={})
