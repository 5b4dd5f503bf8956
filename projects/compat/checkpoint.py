"""mmengine checkpoints: loaded with ``torch.load(weights_only=True)`` and an allowlist, written atomically.

torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``; mmengine 0.10.7 writes objects
into its checkpoints (the message hub's :class:`~mmengine.logging.HistoryBuffer` and the numpy
arrays and scalars inside it), so ``resume`` and ``load_from`` fail with
``Unsupported global: mmengine.logging.history_buffer.HistoryBuffer``. Loading with
``weights_only=False`` would run whatever code a crafted file pickles.

:func:`install` keeps ``weights_only=True`` and

1. allowlists exactly the globals mmengine puts in its own checkpoints (:func:`safe_globals`)
   through ``torch.serialization.add_safe_globals``;
2. replaces mmengine's loader of local files so that a file needing any other global is refused
   with :class:`CheckpointRefusedError`, naming the file and the refused globals.

:func:`install` also makes saving crash-safe: mmengine writes a checkpoint in place, then deletes
the oldest one (``max_keep_ckpts``), then names the new one in ``last_checkpoint``; a kill during the
write leaves a truncated newest file that ``--resume`` loads. After :func:`install`, a local
checkpoint is written to a temporary file and renamed (:func:`save_atomic`), ``last_checkpoint`` is
replaced the same way once the file is complete, and the oldest checkpoint is deleted last.
:func:`checkpoint_problem` tells a complete file from a truncated one without unpickling it;
:func:`latest_complete_checkpoint` is what ``tools/train.py --resume`` resumes from.

:func:`projects.runtime.install_compat` calls :func:`install` (every tool does, through ``load_config``).
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch

_installed = False


def _numpy_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    core = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    out: list = [np.ndarray, np.dtype, core._reconstruct, core.scalar]
    # numpy 1.x pickles name numpy.core.*; numpy 2.x numpy._core.*: accept both spellings
    out += [(core._reconstruct, 'numpy.core.multiarray._reconstruct'),
            (core.scalar, 'numpy.core.multiarray.scalar')]
    # the dtype classes of numeric and bool scalars (np.dtype pickles as its class in numpy 2)
    for name in ('BoolDType', 'Int8DType', 'Int16DType', 'Int32DType', 'Int64DType', 'UInt8DType',
                 'UInt16DType', 'UInt32DType', 'UInt64DType', 'Float16DType', 'Float32DType',
                 'Float64DType', 'LongDType', 'ULongDType', 'LongLongDType', 'ULongLongDType',
                 'ByteDType', 'UByteDType', 'ShortDType', 'UShortDType', 'IntDType', 'UIntDType'):
        cls = getattr(getattr(np, 'dtypes', None), name, None)
        if cls is not None and cls not in out:
            out.append(cls)
    return out


def history_buffer_getattr(obj, name: str):
    """Stands for ``builtins.getattr`` inside checkpoints, restricted to ``HistoryBuffer`` methods.

    ``HistoryBuffer.__getstate__`` pickles its statistics methods (``min``, ``max``, ``current``,
    ``mean``, and any registered one) as ``getattr(HistoryBuffer, 'min')``. The real ``getattr``
    would reach anything (``getattr(np.ndarray, 'tofile')``...), so only those lookups pass.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and isinstance(name, str) and not name.startswith('_'):
        method = getattr(HistoryBuffer, name, None)
        if method is not None and (name in HistoryBuffer._statistics_methods
                                   or name in ('min', 'max', 'current', 'mean')):
            return method
    raise pickle.UnpicklingError(
        f'Unsupported global: GLOBAL builtins.getattr applied to {obj!r}.{name} '
        '(only HistoryBuffer statistics methods are allowed)')


def safe_globals() -> list:
    """The allowlist: what mmengine writes into checkpoints besides tensors and builtins."""
    from mmengine.logging.history_buffer import HistoryBuffer

    return [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


class CheckpointRefusedError(pickle.UnpicklingError):
    """A checkpoint needs a global outside the allowlist; nothing of it was executed."""


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint file is truncated or corrupt (e.g. its save was killed); nothing was loaded."""


def checkpoint_problem(filename: str) -> Optional[str]:
    """``None`` when ``filename`` is a complete checkpoint, else what is wrong with it.

    torch's zip format ends with the archive's central directory, written last, and stores a
    CRC-32 per record: a truncated file has no directory, a damaged one fails a CRC. Reads the
    file once and unpickles nothing. Legacy (non-zip) torch files are not checked.
    """
    if not osp.isfile(filename):
        return 'does not exist'
    size = osp.getsize(filename)
    if size == 0:
        return 'is empty (0 bytes)'
    with open(filename, 'rb') as f:
        magic = f.read(4)
    if magic != b'PK\x03\x04':
        return None if magic[:1] == b'\x80' else f'is not a torch checkpoint (starts with {magic!r})'
    try:
        with zipfile.ZipFile(filename) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f'is truncated or corrupt ({size} bytes; {err})'
    if bad is not None:
        return f'is corrupt (record {bad} fails its CRC check)'
    return None


_STEP = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


def latest_complete_checkpoint(work_dir: str) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """The checkpoint ``--resume`` should continue from, and the newer files passed over.

    Tries the file named in ``<work_dir>/last_checkpoint`` first, then ``iter_N.pth`` /
    ``epoch_N.pth`` by decreasing N. Returns ``(path or None, [(skipped path, problem), ...])``.
    """
    candidates: List[str] = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named:
            candidates.append(named)
    numbered = [p for p in glob.glob(osp.join(work_dir, '*.pth')) if _STEP.match(osp.basename(p))]
    numbered.sort(key=lambda p: (int(_STEP.match(osp.basename(p)).group(1)), osp.getmtime(p)), reverse=True)
    candidates += [p for p in numbered if osp.abspath(p) not in {osp.abspath(c) for c in candidates}]
    skipped = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(filename: str, write: Callable) -> None:
    """Call ``write(file)`` on ``.<name>.tmp`` beside ``filename``, fsync, then rename it over
    ``filename``: readers see the old file or the complete new one, never a part."""
    folder = osp.dirname(osp.abspath(filename))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(filename)}.tmp')
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def _is_local(filename: str) -> bool:
    return '://' not in str(filename)


_mmengine_save_checkpoint: Optional[Callable] = None


def save_atomic(checkpoint: dict, filename: str, file_client_args=None, backend_args=None) -> None:
    """mmengine's ``save_checkpoint``, atomic for local files (other backends are left to mmengine)."""
    if _is_local(filename) and file_client_args is None and backend_args is None:
        write_atomic(str(filename), lambda f: torch.save(checkpoint, f))
    else:
        _mmengine_save_checkpoint(checkpoint, filename, file_client_args=file_client_args,
                                  backend_args=backend_args)


def _save_then_prune(self, runner, step: int, meta: dict) -> None:
    """``CheckpointHook._save_checkpoint_with_step`` in a crash-safe order: write the new
    checkpoint (atomically), point ``last_checkpoint`` at it (atomically), then delete the
    checkpoint that ``max_keep_ckpts`` drops (mmengine deletes it before writing the new one)."""
    from mmengine.dist import is_main_process

    dropped = None
    if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            dropped = self.keep_ckpt_ids.popleft()
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
    filename = self.filename_tmpl.format(step)
    self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
    runner.message_hub.update_info('last_ckpt', self.last_ckpt)
    runner.save_checkpoint(self.out_dir, filename, self.file_client_args,
                           save_optimizer=self.save_optimizer,
                           save_param_scheduler=self.save_param_scheduler, meta=meta,
                           by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
    if not is_main_process():
        return
    write_atomic(osp.join(runner.work_dir, 'last_checkpoint'), lambda f: f.write(str(self.last_ckpt).encode()))
    if dropped is not None:
        old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(dropped))
        if self.file_backend.isfile(old):
            self.file_backend.remove(old)
        elif self.file_backend.isdir(old):  # deepspeed checkpoints are folders
            self.file_backend.rmtree(old)


def _refused_globals(filename: str, err: Exception) -> List[str]:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # legacy (non-zip) files: read the names from torch's message
        names = []
    allowed = {g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
               for g in safe_globals()}
    names = [n for n in names if n not in allowed]
    if not names:
        names = sorted(set(re.findall(r'GLOBAL ([\w.]+)', str(err))))
    return [n if '.' in n else f'builtins.{n}' for n in names]


def load_checkpoint_file(filename: str, map_location=None):
    """``torch.load(filename, weights_only=True)`` with the allowlist, after
    :func:`checkpoint_problem` (torch itself loads a damaged record without noticing); clear
    errors on a refused global or an incomplete file."""
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file "{filename}" does not exist')
    problem = checkpoint_problem(filename)
    if problem is not None:
        raise IncompleteCheckpointError(
            f'checkpoint "{filename}" {problem}; nothing was loaded (was its save interrupted? '
            f'tools/train.py --resume falls back to the newest complete checkpoint)')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused_globals(filename, err)
        raise CheckpointRefusedError(
            f'Refused to load checkpoint "{filename}": it needs the global(s) '
            f'{", ".join(refused) or "(unknown, see below)"}, which are not on the allowlist of '
            f'projects.compat.checkpoint (torch.load runs with weights_only=True so that a '
            f'checkpoint cannot execute code). If you trust this file, allowlist the class with '
            f'torch.serialization.add_safe_globals([...]) before loading. torch said: '
            f'{str(err).splitlines()[0]}') from None


def _load_local(filename, map_location=None):
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint file "{filename}" does not exist')
    return load_checkpoint_file(filename, map_location=map_location)


def install() -> None:
    """Allowlist mmengine's globals, route mmengine's local checkpoint loading through
    :func:`load_checkpoint_file` and its saving through :func:`save_atomic` and
    :func:`_save_then_prune`. Idempotent."""
    global _installed, _mmengine_save_checkpoint
    if _installed:
        return
    import mmengine.runner
    import mmengine.runner.checkpoint as mm_checkpoint
    import mmengine.runner.runner as mm_runner
    from mmengine.hooks import CheckpointHook
    from mmengine.runner.checkpoint import CheckpointLoader

    torch.serialization.add_safe_globals(safe_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local, force=True)
    _mmengine_save_checkpoint = mm_checkpoint.save_checkpoint
    for module in (mm_checkpoint, mm_runner, mmengine.runner):
        module.save_checkpoint = save_atomic
    CheckpointHook._save_checkpoint_with_step = _save_then_prune
    _installed = True
