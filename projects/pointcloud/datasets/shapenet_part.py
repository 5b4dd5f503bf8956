"""ShapeNetPart (``shapenetcore_partanno_segmentation_benchmark_v0_normal``)::

    synsetoffset2category.txt                 "Airplane<TAB>02691156" per line
    train_test_split/shuffled_{train,val,test}_file_list.json
                                              ["shape_data/02691156/1021a0914a...", ...]
    02691156/1021a0914a....txt                lines "x y z nx ny nz part_label" (parts 0..49)
"""
from __future__ import annotations

import json
import os.path as osp

import numpy as np

from ..registry import DATASETS
from .base import PointCloudDataset, require

#: the 16 categories (alphabetical) and their global part ids, the benchmark's convention.
SHAPENETPART_PARTS = {
    'Airplane': [0, 1, 2, 3], 'Bag': [4, 5], 'Cap': [6, 7], 'Car': [8, 9, 10, 11],
    'Chair': [12, 13, 14, 15], 'Earphone': [16, 17, 18], 'Guitar': [19, 20, 21], 'Knife': [22, 23],
    'Lamp': [24, 25, 26, 27], 'Laptop': [28, 29], 'Motorbike': [30, 31, 32, 33, 34, 35],
    'Mug': [36, 37], 'Pistol': [38, 39, 40], 'Rocket': [41, 42, 43], 'Skateboard': [44, 45, 46],
    'Table': [47, 48, 49],
}


@DATASETS.register_module()
class ShapeNetPartDataset(PointCloudDataset):
    """Samples: ``pos`` (N, 3), ``normal`` (N, 3), ``seg`` (N,) global part ids, ``category``.

    Args:
        data_root: the ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` folder.
        split: ``train``, ``val``, ``test`` or ``trainval``.
    """

    METAINFO = dict(classes=list(SHAPENETPART_PARTS),
                    category_parts=list(SHAPENETPART_PARTS.values()))

    def __init__(self, data_root: str = 'data/shapenetcore_partanno_segmentation_benchmark_v0_normal',
                 split: str = 'train', pipeline=None, test_mode: bool = False):
        super().__init__(data_root, pipeline, test_mode)
        name = type(self).__name__
        require(data_root, 'data folder', name)
        cat_file = require(osp.join(data_root, 'synsetoffset2category.txt'), 'category list', name)
        synset_to_cat = {}
        with open(cat_file) as f:
            for line in f:
                if line.strip():
                    cat, synset = line.split()
                    if cat not in SHAPENETPART_PARTS:
                        raise ValueError(f'{name}: {cat_file} names unknown category "{cat}"; expected '
                                         f'one of {list(SHAPENETPART_PARTS)}')
                    synset_to_cat[synset] = list(SHAPENETPART_PARTS).index(cat)
        splits = {'trainval': ('train', 'val')}.get(split, (split,))
        if any(s not in ('train', 'val', 'test') for s in splits):
            raise ValueError(f'{name}: split must be train, val, test or trainval, got {split!r}')
        self.samples = []
        for s in splits:
            path = require(osp.join(data_root, 'train_test_split', f'shuffled_{s}_file_list.json'),
                           f'{s} split file', name)
            with open(path) as f:
                for entry in json.load(f):
                    synset, token = entry.split('/')[-2:]
                    if synset not in synset_to_cat:
                        raise ValueError(f'{name}: {path} lists "{entry}" whose synset {synset} is not '
                                         f'in synsetoffset2category.txt')
                    self.samples.append((osp.join(data_root, synset, token + '.txt'), synset_to_cat[synset]))

    def get_sample(self, idx: int) -> dict:
        path, cat = self.samples[idx]
        arr = np.loadtxt(require(path, 'shape file', type(self).__name__), dtype=np.float32, ndmin=2)
        if arr.shape[1] != 7:
            raise ValueError(f'{type(self).__name__}: {path} must have 7 columns '
                             f'(x y z nx ny nz part), got {arr.shape[1]}')
        return dict(pos=arr[:, :3], normal=arr[:, 3:6], seg=arr[:, 6].astype(np.int64), category=cat)

