"""AtomicCheckpointHook: a checkpoint interrupted while it is written (kill,
full disk, preemption) never becomes the file ``last_checkpoint`` names, and
``--resume`` never starts from a half-written file.

What MMEngine 0.10.x's ``CheckpointHook`` does (``_save_checkpoint_with_step``,
``mmengine.runner.checkpoint.save_checkpoint``, ``LocalBackend.put``):

1. deletes the oldest kept checkpoint (``max_keep_ckpts``) *before* saving
   the new one: with ``max_keep_ckpts=1`` an interrupted save leaves
   ``last_checkpoint`` naming a deleted file;
2. writes the checkpoint bytes with ``open(final_path, 'wb').write(...)``:
   an interrupted write leaves a truncated ``epoch_N.pth`` under its final
   name;
3. after a new best score (``save_best``) saves ``epoch_N.pth`` a second time,
   in place, while ``last_checkpoint`` already names it: an interruption
   there truncates the very file ``last_checkpoint`` names;
4. writes ``last_checkpoint`` with ``open(path, 'w')`` (truncate, then write).

This hook (a ``CheckpointHook`` with the same arguments) changes the order
and the writes, for local ``out_dir`` only (a ``backend_args`` for another
storage keeps MMEngine's behaviour):

* every checkpoint file (``epoch_N.pth``, ``best_*.pth``) goes through
  :class:`AtomicLocalBackend` (registered as file backend
  ``'atomic_local'``): the bytes are written to ``.<name>.tmp-<pid>`` in the
  same directory, flushed and ``fsync``-ed, then ``os.replace``-d onto the
  final name (atomic on POSIX and Windows within one file system), so a
  reader sees the old file or the complete new one;
* ``last_checkpoint`` is written the same way, after the checkpoint is
  complete, and the outdated checkpoint is deleted only after that;
* before a resume (``--resume`` without a path, ``before_run``), the file
  ``last_checkpoint`` names is checked
  (``checkpoint_file_problem`` of
  :mod:`dfine_mmdet.checkpoint.checked_loader`:
  present, a complete zip archive, every member's CRC-32). If it is missing
  or damaged (e.g. written by plain ``CheckpointHook``), the newest complete
  ``filename_tmpl`` checkpoint of the same directory is used instead,
  ``last_checkpoint`` is rewritten to name it, and a warning names both
  files; if there is none, ``CorruptCheckpointError`` names the file and the
  problem before anything is trained;
* ``before_train`` removes stale ``.<name>.tmp-<pid>`` files left by a killed
  process (logged).

Use (in place of ``CheckpointHook``)::

    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook',
                                         interval=1, max_keep_ckpts=3))
"""
import logging
import os
import os.path as osp
import re
from typing import List, Optional, Tuple

from mmdet.registry import HOOKS
from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.utils import mkdir_or_exist

from ...checkpoint import CorruptCheckpointError, checkpoint_file_problem

_TMP_MARK = '.tmp-'


def _tmp_path(filepath: str) -> str:
    """``dir/.<name>.tmp-<pid>``: hidden, in the final file's directory (an
    ``os.replace`` across file systems would not be atomic)."""
    head, tail = osp.split(filepath)
    return osp.join(head, f'.{tail}{_TMP_MARK}{os.getpid()}')


def atomic_write(data: bytes, filepath: str) -> None:
    """Write ``data`` to ``filepath`` so that the path holds either its old
    content or all of ``data``, never a part (temp file + fsync +
    ``os.replace``). On an error the temp file is removed and the error
    re-raised."""
    mkdir_or_exist(osp.dirname(osp.abspath(filepath)))
    tmp = _tmp_path(filepath)
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass
        raise
    try:  # persist the rename itself (POSIX; not possible on Windows)
        fd = os.open(osp.dirname(osp.abspath(filepath)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """MMEngine's ``LocalBackend`` whose ``put`` / ``put_text`` write
    atomically (:func:`atomic_write`). Selected with
    ``backend_args=dict(backend='atomic_local')``."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), str(filepath))


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes and a checked resume (see the
    module docstring). Takes ``CheckpointHook``'s arguments.

    Args:
        check_resume (bool): check the file ``last_checkpoint`` names before
            an automatic resume and fall back to the newest complete
            checkpoint. Defaults to True.
    """

    def __init__(self, *args, check_resume: bool = True, **kwargs):
        out_dir = kwargs.get('out_dir')
        if kwargs.get('backend_args') is None and kwargs.get(
                'file_client_args') is None and (out_dir is None
                                                 or '://' not in str(out_dir)):
            kwargs['backend_args'] = dict(backend='atomic_local')
        super().__init__(*args, **kwargs)
        self.check_resume = check_resume
        self.atomic = (self.backend_args
                       or {}).get('backend') == 'atomic_local'

    # -- saving --------------------------------------------------------------
    def _save_checkpoint_with_step(self, runner, step, meta):
        """As MMEngine's, but: the checkpoint is written atomically, then
        ``last_checkpoint`` (atomically), and only then the outdated
        checkpoint is deleted."""
        if not self.atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = None
        if self.max_keep_ckpts > 0 and not (len(self.keep_ckpt_ids) > 0 and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.file_backend.join_path(
                    self.out_dir,
                    self.filename_tmpl.format(self.keep_ckpt_ids.popleft()))
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write(
            str(self.last_ckpt).encode(),
            osp.join(runner.work_dir, 'last_checkpoint'))
        if outdated is not None and outdated != self.last_ckpt:
            if self.file_backend.isfile(outdated):
                self.file_backend.remove(outdated)
            elif self.file_backend.isdir(outdated):
                self.file_backend.rmtree(outdated)  # deepspeed checkpoints

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.atomic and is_main_process():
            self._remove_stale_tmp_files(runner)

    def _remove_stale_tmp_files(self, runner) -> None:
        pattern = re.compile(r'^\..+' + re.escape(_TMP_MARK) + r'(\d+)$')
        mine = str(os.getpid())
        for d in {self.out_dir, runner.work_dir}:
            if not d or not osp.isdir(d):
                continue
            for name in os.listdir(d):
                m = pattern.match(name)
                if m and m.group(1) != mine:
                    os.remove(osp.join(d, name))
                    print_log(
                        f'removed {osp.join(d, name)}: an incomplete '
                        'checkpoint write of an interrupted run',
                        logger='current')

    # -- resuming ------------------------------------------------------------
    def before_run(self, runner) -> None:
        """Runs before MMEngine's ``load_or_resume``: check the checkpoint
        ``last_checkpoint`` names (automatic resume only)."""
        super().before_run(runner)
        cfg = runner.cfg
        if not self.check_resume or not cfg.get('resume', False) or \
                cfg.get('load_from') is not None:
            return
        save_file = osp.join(runner.work_dir, 'last_checkpoint')
        if not osp.isfile(save_file):
            return  # MMEngine starts from scratch and says so
        with open(save_file) as f:
            named = f.read().strip()
        # every rank has read the same name before rank 0 may rewrite it
        barrier()
        if '://' in named:
            return  # remote storage: not checked here
        problem = checkpoint_file_problem(named) if named else \
            'not named (last_checkpoint is empty)'
        if problem is None:
            return
        folder = osp.dirname(named) if named else runner.work_dir
        fallback, damaged = self._newest_complete(folder, exclude=named)
        if fallback is None:
            raise CorruptCheckpointError(
                f'cannot resume: {save_file} names {named or "nothing"}, '
                f'whose file is {problem}, and {folder} holds no other '
                'complete checkpoint matching '
                f'{self.filename_tmpl.format("*")!r}' +
                (f' (damaged: {", ".join(damaged)})' if damaged else '') +
                '. Start without --resume, or pass --resume PATH.')
        print_log(
            f'{save_file} names {named}, whose file is {problem}; resuming '
            f'from {fallback}, the newest complete checkpoint in {folder}' +
            (f' (also damaged: {", ".join(damaged)})' if damaged else ''),
            logger='current',
            level=logging.WARNING)
        if is_main_process():
            atomic_write(fallback.encode(), save_file)
        barrier()

    def _newest_complete(self, folder: str,
                         exclude: str) -> Tuple[Optional[str], List[str]]:
        """The newest complete ``filename_tmpl`` checkpoint in ``folder``
        (or None) and the damaged ones newer than it."""
        if not osp.isdir(folder):
            return None, []
        head, _, tail = self.filename_tmpl.partition('{}')
        pattern = re.compile('^' + re.escape(head) + r'(\d+)' +
                             re.escape(tail) + '$')
        found = []
        for name in os.listdir(folder):
            m = pattern.match(name)
            path = osp.join(folder, name)
            if m and osp.isfile(path) and osp.abspath(path) != osp.abspath(
                    exclude or ''):
                found.append((int(m.group(1)), path))
        damaged: List[str] = []
        for _, path in sorted(found, reverse=True):
            if checkpoint_file_problem(path) is None:
                return path, damaged
            damaged.append(path)
        return None, damaged


__all__ = ['AtomicCheckpointHook', 'AtomicLocalBackend', 'atomic_write']
