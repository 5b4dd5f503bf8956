"""Import open3d on machines without a system ``libusb-1.0.so.0``.

The ``open3d-cpu`` 0.20 wheel links against ``libusb-1.0.so.0`` but does not ship it; a
minimal Linux image lacks it and ``import open3d`` fails with ``OSError: libusb-1.0.so.0:
cannot open shared object file``. The PyPI package ``libusb-package`` ships the library;
loading it with ``RTLD_GLOBAL`` before the import lets the dynamic linker resolve open3d's
dependency from it. This module is the only place that does so: everything else calls
:func:`import_open3d`.
"""
from __future__ import annotations

import ctypes
import importlib
from types import ModuleType

_OPEN3D: ModuleType | None = None


class Open3DUnavailable(ImportError):
    """open3d cannot be imported here; the message says why and how to fix it."""


def preload_libusb() -> str | None:
    """Load ``libusb-1.0`` globally; return the path loaded, or ``None`` if none was found.

    A system library (``libusb-1.0.so.0`` on the loader path) is preferred; otherwise the
    copy shipped by ``libusb-package`` is used.
    """
    try:
        ctypes.CDLL('libusb-1.0.so.0', mode=ctypes.RTLD_GLOBAL)
        return 'libusb-1.0.so.0'
    except OSError:
        pass
    try:
        import libusb_package
    except ImportError:
        return None
    path = libusb_package.get_library_path()
    if path is None:
        return None
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return str(path)


def import_open3d() -> ModuleType:
    """Return the ``open3d`` module, preloading ``libusb`` first; cached after the first call.

    Raises:
        Open3DUnavailable: open3d is not installed or its shared libraries do not load.
    """
    global _OPEN3D
    if _OPEN3D is not None:
        return _OPEN3D
    libusb = preload_libusb()
    try:
        _OPEN3D = importlib.import_module('open3d')
    except (ImportError, OSError) as err:
        hint = ('pip install open3d-cpu==0.20.0 libusb-package==1.0.30.0' if libusb is None
                else f'libusb loaded from {libusb}')
        raise Open3DUnavailable(f'cannot import open3d ({err}); {hint}') from err
    return _OPEN3D
