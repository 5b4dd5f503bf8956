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

from ..registry import DATASETS
from .base import PointCloudDataset, require
from .hdf5 import read_h5_clouds


def _read_lines(path: str) -> list:
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip()]


@DATASETS.register_module()
class ModelNet40Dataset(PointCloudDataset):
    """ModelNet40 HDF5 (2048 points per shape). Samples: ``pos`` (2048, 3), ``label``.

    Args:
        data_root: the ``modelnet40_ply_hdf5_2048`` folder.
        split: ``'train'`` or ``'test'`` (files ``ply_data_{split}*.h5``).
    """

    def __init__(self, data_root: str = 'data/modelnet40_ply_hdf5_2048', split: str = 'train',
                 pipeline=None, test_mode: bool = False):
        super().__init__(data_root, pipeline, test_mode)
        name = type(self).__name__
        if split not in ('train', 'test'):
            raise ValueError(f'{name}: split must be "train" or "test", got {split!r}')
        require(data_root, 'data folder', name)
        files = sorted(glob.glob(osp.join(data_root, f'ply_data_{split}*.h5')))
        if not files:
            raise FileNotFoundError(f'{name}: no {osp.join(data_root, f"ply_data_{split}*.h5")} files')
        data, label = [], []
        for fn in files:
            arrays = read_h5_clouds(fn, require=('data', 'label'), owner=name)
            data.append(arrays['data'])
            label.append(arrays['label'])
        self.points, self.labels = np.concatenate(data), np.concatenate(label)
        self.samples = list(range(len(self.labels)))
        self.classes = _read_lines(require(osp.join(data_root, 'shape_names.txt'), 'class names', name))

    @property
    def metainfo(self) -> dict:
        return dict(classes=self.classes)

    def get_sample(self, idx: int) -> dict:
        return dict(pos=self.points[idx].copy(), label=int(self.labels[idx]))


@DATASETS.register_module()
class ModelNet40NormalDataset(PointCloudDataset):
    """ModelNet40 resampled with normals (10,000 points per shape, read lazily).

    Samples: ``pos`` (N, 3), ``normal`` (N, 3), ``label``.
    """

    def __init__(self, data_root: str = 'data/modelnet40_normal_resampled', split: str = 'train',
                 pipeline=None, test_mode: bool = False):
        super().__init__(data_root, pipeline, test_mode)
        name = type(self).__name__
        require(data_root, 'data folder', name)
        self.classes = _read_lines(require(osp.join(data_root, 'modelnet40_shape_names.txt'),
                                           'class names', name))
        index = {c: i for i, c in enumerate(self.classes)}
        ids = _read_lines(require(osp.join(data_root, f'modelnet40_{split}.txt'), f'{split} split', name))
        self.samples = []
        for sid in ids:
            cls = sid.rsplit('_', 1)[0]
            if cls not in index:
                raise ValueError(f'{name}: shape "{sid}" of modelnet40_{split}.txt names class "{cls}" '
                                 f'which is not in modelnet40_shape_names.txt')
            self.samples.append((osp.join(data_root, cls, sid + '.txt'), index[cls]))

    @property
    def metainfo(self) -> dict:
        return dict(classes=self.classes)

    def get_sample(self, idx: int) -> dict:
        path, label = self.samples[idx]
        arr = np.loadtxt(require(path, 'shape file', type(self).__name__), delimiter=',',
                         dtype=np.float32, ndmin=2)
        if arr.shape[1] < 6:
            raise ValueError(f'{type(self).__name__}: {path} must have 6 comma-separated columns '
                             f'(x,y,z,nx,ny,nz), got {arr.shape[1]}')
        return dict(pos=arr[:, :3], normal=arr[:, 3:6], label=label)
