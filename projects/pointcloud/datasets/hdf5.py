"""PointNet's HDF5 layout, shared by ModelNet40 (``modelnet40_ply_hdf5_2048/ply_data_*.h5``) and
ShapeNetPart (``hdf5_data/ply_data_*.h5``)::

    data    (B, N, C) float   coordinates first (C = 3), then any features
    label   (B, 1) int        class of each cloud (per point, (B, N), in S3DIS's HDF5)
    pid     (B, N) int        part of each point (ShapeNetPart; some copies call it ``seg``)
    normal  (B, N, 3) float   optional
"""
from __future__ import annotations

import os.path as osp
from typing import Sequence

import numpy as np

from projects.bad_data import BadSampleError

H5_KEYS = {'data': np.float32, 'normal': np.float32, 'label': np.int64, 'pid': np.int64, 'seg': np.int64}


def read_h5_clouds(path: str, index: int | None = None, *, require: Sequence[str] = ('data',),
                   owner: str = 'HDF5') -> dict[str, np.ndarray]:
    """The arrays of one PointNet-layout HDF5 file, by key (those of :data:`H5_KEYS` it holds).

    Shapes: ``data`` (B, N, C) float32, ``normal`` (B, N, 3) float32, ``label`` (B,) int64 (or
    (B, N) when per point), ``pid`` / ``seg`` (B, N) int64. With ``index``, only that cloud is read
    and the leading B axis is dropped (``label`` becomes a 0-d array).

    Raises ``FileNotFoundError`` for a missing file, ``BadSampleError`` for a file h5py cannot
    read (truncated or corrupt), ``KeyError`` naming a key of ``require`` the file lacks and the
    keys it has, ``IndexError`` for an ``index`` outside ``[0, B)``; the messages start with
    ``owner`` (the dataset's name).
    """
    import h5py
    if not osp.isfile(path):
        raise FileNotFoundError(f'{owner}: HDF5 file not found: {path}')
    try:
        f = h5py.File(path, 'r')
    except OSError as err:
        raise BadSampleError(f'{owner}: {path}: not a readable HDF5 file (truncated or corrupt: '
                             f'{str(err).splitlines()[0]})') from None
    with f:
        missing = [k for k in require if k not in f]
        if missing:
            raise KeyError(f'{owner}: {path} has no {missing} dataset (keys: {sorted(f.keys())})')
        keys = [k for k in H5_KEYS if k in f]
        n = f[keys[0]].shape[0] if keys else 0
        if index is not None and not 0 <= index < n:
            raise IndexError(f'{owner}: index {index} out of range: {path} holds {n} clouds')
        out = {}
        for key in keys:
            try:
                arr = np.asarray(f[key][:] if index is None else f[key][index], dtype=H5_KEYS[key])
            except OSError as err:  # a damaged chunk inside a file that opens
                raise BadSampleError(f'{owner}: {path} [{key}]: unreadable data ({str(err).splitlines()[0]})') from None
            if key == 'label':   # (B, 1) -> (B,), (1,) -> ()
                lead = arr.shape[:1] if index is None else ()
                arr = arr.reshape(lead + (-1,))
                arr = arr[..., 0] if arr.shape[-1] == 1 else arr
            out[key] = arr
    return out
