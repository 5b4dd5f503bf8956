"""Small C kernels built on first use with the system C compiler and loaded through ctypes.

For loops that PyTorch cannot vectorise (farthest point sampling is sequential in its samples):
plain C99 with no Python or PyTorch headers, so a build takes well under a second, needs no
network, and the library keeps working without it (callers fall back to PyTorch when
:func:`load_library` raises :class:`NativeBuildError`).

Libraries are cached under ``$ATTN_OPS_CACHE`` (default ``~/.cache/attn_ops``), one file per
source/compiler/flags hash, written atomically so that parallel processes may build at once.
``ATTN_OPS_NATIVE=0`` disables the kernels; ``CC`` picks the compiler (default ``cc``).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

#: flags of every build: optimised, position independent, threads, and no contraction of
#: ``a * b + c`` into a fused multiply-add, so float results round as PyTorch's separate ops do.
CFLAGS = ('-O3', '-std=c99', '-shared', '-fPIC', '-pthread', '-ffp-contract=off')


class NativeBuildError(RuntimeError):
    """The kernel cannot be built or loaded here (no compiler, compile error, disabled)."""


def cache_dir() -> Path:
    """Where built libraries are kept: ``$ATTN_OPS_CACHE`` or ``~/.cache/attn_ops``."""
    root = os.environ.get('ATTN_OPS_CACHE')
    if root:
        return Path(root)
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'attn_ops'


def _compiler() -> str:
    cc = os.environ.get('CC') or shutil.which('cc') or shutil.which('gcc') or shutil.which('clang')
    if not cc:
        raise NativeBuildError('no C compiler found (set CC or install gcc/clang)')
    return cc


def load_library(name: str, source: str) -> ctypes.CDLL:
    """Build ``source`` (C99) into ``<cache>/<name>-<hash>.so`` unless present, and load it.

    Raises :class:`NativeBuildError` naming the reason (disabled, no compiler, the compiler's
    error output) when the library cannot be had. Callers keep the handle (a second call
    reloads the cached file).
    """
    if os.environ.get('ATTN_OPS_NATIVE', '1') == '0':
        raise NativeBuildError('disabled by ATTN_OPS_NATIVE=0')
    cc = _compiler()
    key = hashlib.sha256('\0'.join((source, cc, *CFLAGS, platform.machine())).encode()).hexdigest()[:16]
    path = cache_dir() / f'{name}-{key}.so'
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                src, lib = Path(tmp) / f'{name}.c', Path(tmp) / f'{name}.so'
                src.write_text(source)
                proc = subprocess.run([cc, *CFLAGS, str(src), '-o', str(lib)], capture_output=True,
                                      text=True, timeout=120)
                if proc.returncode != 0:
                    raise NativeBuildError(f'{cc} failed on {name}.c:\n{proc.stderr.strip()[-2000:]}')
                os.replace(lib, path)
        except (OSError, subprocess.SubprocessError) as err:
            raise NativeBuildError(f'cannot build {name} in {path.parent}: {err}') from err
    try:
        return ctypes.CDLL(str(path))
    except OSError as err:
        raise NativeBuildError(f'cannot load {path}: {err}') from err
