"""Load mmengine checkpoints with ``torch.load(weights_only=True)``: allowlist, never unpickle freely.

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

:func:`projects.runtime.install_compat` calls :func:`install` (every tool does, through ``load_config``).
"""
from __future__ import annotations

import os
import pickle
import re
from typing import Callable, List, Tuple, Union

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
    """``torch.load(filename, weights_only=True)`` with the allowlist; clear error on refusal."""
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
    """Allowlist mmengine's globals and route mmengine's local checkpoint loading through
    :func:`load_checkpoint_file`. Idempotent."""
    global _installed
    if _installed:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    torch.serialization.add_safe_globals(safe_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local, force=True)
    _installed = True
