"""ModelNet40 from its two standard layouts.

``modelnet40_ply_hdf5_2048/`` (PointNet's HDF5; y-up)::

    ply_data_train0.h5 ... ply_data_test1.h5   keys data (N, 2048, 3) float, label (N, 1) int
    shape_names.txt                            40 class names, one per line

``modelnet40_normal_resampled/`` (PointNet++'s text files)::

    modelnet40_shape_names.txt, modelnet40_train.txt, modelnet40_test.txt (ids like airplane_0001)
    airplane/airplane_0001.txt                 lines "x,y,z,nx,ny,nz"
"""
from __future__ import annotations

import glob
import os.path as osp

import numpy as np

from projects.bad_data import BadSampleError, bad_sample
from ..registry import DATASETS
from .base import PointCloudDataset, check_labels, check_points, read_txt_cloud, require
from .hdf5 import read_h5_clouds


def _read_lines(path: str) -> list:
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip()]


@DATASETS.register_module()
class ModelNet40Dataset(PointCloudDataset):
    """ModelNet40 HDF5 (2048 points per shape). Samples: ``pos`` (2048, 3), ``label``.

    The HDF5 files are read when the dataset is built (a truncated file, a missing ``data`` or
    ``label`` key, mismatched lengths or labels outside the classes are named there); each
    shape's coordinates are checked when it is loaded.

    Args:
        data_root: the ``modelnet40_ply_hdf5_2048`` folder.
        split: ``'train'`` or ``'test'`` (files ``ply_data_{split}*.h5``).
        skip_bad: log and skip bad files and shapes instead of raising.
    """

    def __init__(self, data_root: str = 'data/modelnet40_ply_hdf5_2048', split: str = 'train',
                 pipeline=None, test_mode: bool = False, skip_bad: bool = False):
        super().__init__(data_root, pipeline, test_mode, skip_bad)
        name = type(self).__name__
        if split not in ('train', 'test'):
            raise ValueError(f'{name}: split must be "train" or "test", got {split!r}')
        require(data_root, 'data folder', name)
        files = sorted(glob.glob(osp.join(data_root, f'ply_data_{split}*.h5')))
        if not files:
            raise FileNotFoundError(f'{name}: no {osp.join(data_root, f"ply_data_{split}*.h5")} files')
        self.classes = _read_lines(require(osp.join(data_root, 'shape_names.txt'), 'class names', name))
        data, label, origin = [], [], []
        for fn in files:
            try:
                points, labels = self._read_h5(fn)
            except BadSampleError as err:
                self.skip_bad.skip(err, key=fn)
                continue
            data.append(points)
            label.append(labels)
            origin += [(fn, i) for i in range(len(labels))]
        if not origin:
            raise BadSampleError(f'{name}: no readable {split} shapes in {data_root}')
        self.points, self.labels = np.concatenate(data), np.concatenate(label)
        self.origin = origin
        self.samples = list(range(len(self.labels)))

    def _read_h5(self, fn: str):
        """(points (N, P, 3) float32, labels (N,) int64) of one file, or ``BadSampleError``."""
        name = type(self).__name__
        try:
            arrays = read_h5_clouds(fn, require=('data', 'label'), owner=name)
        except KeyError as err:  # a missing key: named with the keys the file has
            raise BadSampleError(err.args[0]) from None
        points, labels = arrays['data'], arrays['label']
        if points.ndim != 3 or points.shape[2] != 3:
            raise bad_sample(name, fn, f'"data" must be (shapes, points, 3), got {points.shape}', key='data')
        if labels.shape != (len(points),):
            raise bad_sample(name, fn, f'"label" must hold one class per shape ({len(points)}), got '
                             f'shape {labels.shape}', key='label')
        check_labels(labels, len(self.classes), name, fn, key='label')
        return points, labels

    @property
    def metainfo(self) -> dict:
        return dict(classes=self.classes)

    def get_sample(self, idx: int) -> dict:
        fn, i = self.origin[idx]
        pos = check_points(self.points[idx], type(self).__name__, fn, key=f'data[{i}]')
        return dict(pos=pos.copy(), label=int(self.labels[idx]))


@DATASETS.register_module()
class ModelNet40NormalDataset(PointCloudDataset):
    """ModelNet40 resampled with normals (10,000 points per shape, read lazily).

    Samples: ``pos`` (N, 3), ``normal`` (N, 3), ``label``. A shape named by the split file but
    missing, a malformed line, NaN/Inf values or an empty file raise ``BadSampleError`` when the
    shape is loaded (``skip_bad=True``: logged and skipped).
    """

    def __init__(self, data_root: str = 'data/modelnet40_normal_resampled', split: str = 'train',
                 pipeline=None, test_mode: bool = False, skip_bad: bool = False):
        super().__init__(data_root, pipeline, test_mode, skip_bad)
        name = type(self).__name__
        require(data_root, 'data folder', name)
        self.classes = _read_lines(require(osp.join(data_root, 'modelnet40_shape_names.txt'),
                                           'class names', name))
        index = {c: i for i, c in enumerate(self.classes)}
        split_file = require(osp.join(data_root, f'modelnet40_{split}.txt'), f'{split} split', name)
        self.samples = []
        with open(split_file) as f:
            for line, sid in enumerate(f, 1):
                sid = sid.strip()
                if not sid:
                    continue
                cls = sid.rsplit('_', 1)[0]
                if cls not in index:
                    raise bad_sample(name, split_file, f'shape "{sid}" names class "{cls}", which is '
                                     'not in modelnet40_shape_names.txt', line=line)
                self.samples.append((osp.join(data_root, cls, sid + '.txt'), index[cls], split_file, line))

    @property
    def metainfo(self) -> dict:
        return dict(classes=self.classes)

    def get_sample(self, idx: int) -> dict:
        path, label, split_file, line = self.samples[idx]
        name = type(self).__name__
        if not osp.isfile(path):
            raise bad_sample(name, split_file, f'names shape file {path}, which does not exist', line=line)
        arr = read_txt_cloud(path, 6, name, delimiter=',', fields='x,y,z,nx,ny,nz')
        return dict(pos=arr[:, :3], normal=arr[:, 3:6], label=label)
