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

from projects.bad_data import bad_sample
from ..registry import DATASETS
from .base import PointCloudDataset, check_labels, read_txt_cloud, require

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

    A shape listed in a split file but missing, a malformed line, NaN/Inf values, an empty file
    or a part id outside 0..49 raise ``BadSampleError`` when the shape is loaded.

    Args:
        data_root: the ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` folder.
        split: ``train``, ``val``, ``test`` or ``trainval``.
        skip_bad: log and skip bad shapes instead of raising.
    """

    METAINFO = dict(classes=list(SHAPENETPART_PARTS),
                    category_parts=list(SHAPENETPART_PARTS.values()))

    def __init__(self, data_root: str = 'data/shapenetcore_partanno_segmentation_benchmark_v0_normal',
                 split: str = 'train', pipeline=None, test_mode: bool = False, skip_bad: bool = False):
        super().__init__(data_root, pipeline, test_mode, skip_bad)
        name = type(self).__name__
        require(data_root, 'data folder', name)
        cat_file = require(osp.join(data_root, 'synsetoffset2category.txt'), 'category list', name)
        synset_to_cat = {}
        with open(cat_file) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                fields = line.split()
                if len(fields) != 2:
                    raise bad_sample(name, cat_file, f'expected "<Category> <synset>", got {line.strip()!r}',
                                     line=number)
                cat, synset = fields
                if cat not in SHAPENETPART_PARTS:
                    raise bad_sample(name, cat_file, f'unknown category "{cat}"; expected one of '
                                     f'{list(SHAPENETPART_PARTS)}', line=number)
                synset_to_cat[synset] = list(SHAPENETPART_PARTS).index(cat)
        splits = {'trainval': ('train', 'val')}.get(split, (split,))
        if any(s not in ('train', 'val', 'test') for s in splits):
            raise ValueError(f'{name}: split must be train, val, test or trainval, got {split!r}')
        self.samples = []
        for s in splits:
            path = require(osp.join(data_root, 'train_test_split', f'shuffled_{s}_file_list.json'),
                           f'{s} split file', name)
            try:
                with open(path) as f:
                    entries = json.load(f)
            except json.JSONDecodeError as err:
                raise bad_sample(name, path, f'not valid JSON ({err.msg})', line=err.lineno) from None
            for i, entry in enumerate(entries):
                synset, token = entry.split('/')[-2:]
                if synset not in synset_to_cat:
                    raise bad_sample(name, path, f'entry {i} "{entry}": synset {synset} is not in '
                                     'synsetoffset2category.txt')
                self.samples.append((osp.join(data_root, synset, token + '.txt'), synset_to_cat[synset],
                                     path, i, entry))

    def get_sample(self, idx: int) -> dict:
        path, cat, split_file, i, entry = self.samples[idx]
        name = type(self).__name__
        if not osp.isfile(path):
            raise bad_sample(name, split_file, f'entry {i} "{entry}" names shape file {path}, which '
                             'does not exist')
        arr = read_txt_cloud(path, 7, name, fields='x y z nx ny nz part')
        seg = check_labels(arr[:, 6], 50, name, path, what='part id').astype(np.int64)
        return dict(pos=arr[:, :3], normal=arr[:, 3:6], seg=seg, category=cat)
