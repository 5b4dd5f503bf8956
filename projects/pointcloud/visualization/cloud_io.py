"""Point-cloud files in and out: :func:`read_cloud` (PLY/PCD/XYZ/TXT/NPY/NPZ and the PointNet
HDF5 layout of ModelNet40 / ShapeNetPart), :func:`read_labels`, and :func:`write_ply` (binary PLY
with colours and labels). :func:`check_cloud` is the array form every renderer takes.
"""
from __future__ import annotations

import os
import os.path as osp

import numpy as np

from ..datasets.hdf5 import read_h5_clouds

CLOUD_SUFFIXES = ('.ply', '.pcd', '.xyz', '.txt', '.pts', '.npy', '.npz', '.h5', '.hdf5')


def check_cloud(points: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``points`` (N, 3) as float64 and ``colors`` (N, 3) as uint8 (floats in [0, 1] are scaled
    by 255); raises ``ValueError`` naming the shapes otherwise."""
    points = np.asarray(points, np.float64)
    colors = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got shape {points.shape}')
    if colors.shape != points.shape:
        raise ValueError(f'colors must be (N, 3) like points {points.shape}, got {colors.shape}')
    if colors.dtype != np.uint8:
        colors = np.clip(np.round(colors * 255 if colors.max() <= 1.0 else colors), 0, 255).astype(np.uint8)
    return points, colors


def _pick(rows: np.ndarray, index: int | None, path: str) -> np.ndarray:
    """A batch of clouds (B, N, C) -> the one at ``index``; a single cloud passes through."""
    if rows.ndim == 3:
        if index is None:
            raise ValueError(f'{path} holds {rows.shape[0]} clouds {rows.shape}; choose one with --index')
        if not 0 <= index < rows.shape[0]:
            raise IndexError(f'--index {index} out of range: {path} holds {rows.shape[0]} clouds')
        return rows[index]
    return rows


def read_cloud(path: str, index: int | None = None, label_column: int | None = None) -> dict:
    """Read a point cloud file into ``dict(points (N, 3), colors (N, 3) uint8 or None, labels, pred,
    category)`` (``labels``: the ground truth; ``pred``/``category``: from prediction files; None when absent).

    * ``.ply`` / ``.pcd``: through open3d (points and colours);
    * ``.xyz`` / ``.txt`` / ``.pts``: whitespace- or comma-separated columns, x y z first
      (ModelNet40 ``*_normal_resampled`` and ShapeNetPart files); ``label_column`` picks a label
      column (ShapeNetPart: ``-1``, the part id);
    * ``.npy``: (N, >=3) or (B, N, >=3) with ``index``; ``.npz``: ``points``/``pos``/``data`` and
      optional ``labels``/``seg``/``pid``/``label``, ``pred`` and ``category`` (the prediction files
      of ``tools/test.py --out``, :mod:`projects.pointcloud.predictions`);
    * ``.h5`` / ``.hdf5``: the ModelNet40 / ShapeNetPart HDF5 layout, read by the datasets'
      :func:`~projects.pointcloud.datasets.read_h5_clouds`; ``index`` selects the sample, whose
      labels are its ``pid`` (part labels) if present, else its ``label``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'point cloud file not found: {path}')
    suffix = osp.splitext(path)[1].lower()
    colors = labels = pred = category = None
    if suffix in ('.ply', '.pcd'):
        from projects.compat.open3d import import_open3d
        cloud = import_open3d().io.read_point_cloud(path)
        points = np.asarray(cloud.points)
        if len(points) == 0:
            raise ValueError(f'{path}: no points could be read (not a point-cloud {suffix} file?)')
        if cloud.has_colors():
            colors = np.round(np.asarray(cloud.colors) * 255).astype(np.uint8)
    elif suffix in ('.xyz', '.txt', '.pts'):
        with open(path) as f:
            text = f.read().replace(',', ' ')
        try:
            arr = np.loadtxt(text.splitlines(), ndmin=2)
        except ValueError as err:
            raise ValueError(f'{path}: not a table of numbers ({err})') from None
        if arr.shape[1] < 3:
            raise ValueError(f'{path}: needs at least 3 columns (x y z), got {arr.shape[1]}')
        points = arr[:, :3]
        if label_column is not None:
            labels = arr[:, label_column].astype(np.int64)
    elif suffix in ('.npy', '.npz'):
        if suffix == '.npy':
            arr, extra = np.load(path), {}
        else:
            with np.load(path) as z:
                extra = {k: z[k] for k in z.files}
            key = next((k for k in ('points', 'pos', 'data', 'xyz') if k in extra), None)
            if key is None:
                raise KeyError(f'{path}: no points/pos/data/xyz array (arrays: {sorted(extra)})')
            arr = extra[key]
        arr = _pick(np.asarray(arr), index, path)
        if arr.ndim != 2 or arr.shape[1] < 3:
            raise ValueError(f'{path}: expected (N, >=3) or (B, N, >=3) points, got {arr.shape}')
        points = arr[:, :3]
        for key in ('labels', 'seg', 'pid', 'label'):
            if key in extra:
                lab = np.asarray(extra[key])
                labels = lab[index] if index is not None and lab.ndim >= 1 and lab.shape[0] != len(points) else lab
                break
        pred, category = extra.get('pred'), extra.get('category')
    elif suffix in ('.h5', '.hdf5'):
        arrays = read_h5_clouds(path, index)
        points = _pick(arrays['data'], index, path)[:, :3]
        key = next((k for k in ('pid', 'seg', 'label') if k in arrays), None)
        labels = None if key is None else arrays[key]
    else:
        raise ValueError(f'{path}: unknown point-cloud suffix {suffix!r}; expected one of {CLOUD_SUFFIXES}')
    as_labels = (lambda x: None if x is None else np.asarray(x).astype(np.int64).reshape(-1))
    return dict(points=np.asarray(points, np.float64), colors=colors, labels=as_labels(labels),
                pred=as_labels(pred), category=None if category is None else int(as_labels(category)[0]))


def read_labels(path: str) -> np.ndarray:
    """Labels from ``.npy`` or a text file (one integer per line, or whitespace separated)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'label file not found: {path}')
    try:
        arr = np.load(path) if path.endswith('.npy') else np.loadtxt(path, ndmin=1)
    except ValueError as err:
        raise ValueError(f'{path}: not a list of integer labels ({err})') from None
    arr = np.asarray(arr).reshape(-1)
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f'{path}: labels must be integers, got values like {arr[np.mod(arr, 1) != 0][:3]}')
    return arr.astype(np.int64)


def write_ply(path: str, points: np.ndarray, colors: np.ndarray | None = None,
              labels: np.ndarray | None = None) -> str:
    """Binary little-endian PLY: float32 ``x y z``, optional ``uchar red green blue`` and ``int label``."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got shape {points.shape}')
    n = len(points)
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    header = ['ply', 'format binary_little_endian 1.0', f'element vertex {n}',
              'property float x', 'property float y', 'property float z']
    if colors is not None:
        _, colors = check_cloud(points, colors)
        fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
        header += ['property uchar red', 'property uchar green', 'property uchar blue']
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.size != n:
            raise ValueError(f'labels has {labels.size} entries for {n} points')
        fields += [('label', '<i4')]
        header += ['property int label']
    header.append('end_header')
    rec = np.empty(n, dtype=fields)
    rec['x'], rec['y'], rec['z'] = points[:, 0], points[:, 1], points[:, 2]
    if colors is not None:
        rec['red'], rec['green'], rec['blue'] = colors[:, 0], colors[:, 1], colors[:, 2]
    if labels is not None:
        rec['label'] = labels
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(('\n'.join(header) + '\n').encode('ascii'))
        f.write(rec.tobytes())
    return path
