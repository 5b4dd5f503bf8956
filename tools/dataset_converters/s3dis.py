"""Convert S3DIS (``Stanford3dDataset_v1.2_Aligned_Version``) to one array per room.

Input::

    Stanford3dDataset_v1.2_Aligned_Version/Area_1/conferenceRoom_1/Annotations/chair_1.txt
                                                   (lines "x y z r g b", one file per object)
Output::

    OUT/Area_1_conferenceRoom_1.npy               float32 (N, 7): x y z r g b label

Labels follow the 13 S3DIS classes (``stairs`` counts as ``clutter``, as in PointNet's tools).
Usage (a progress bar counts the rooms in a terminal; none under ``--quiet`` or in a piped log)::

    python tools/dataset_converters/s3dis.py data/Stanford3dDataset_v1.2_Aligned_Version data/s3dis
"""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import re
import sys

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from projects.progress import add_quiet_argument, track  # noqa: E402

CLASSES = ('ceiling', 'floor', 'wall', 'beam', 'column', 'window', 'door', 'table', 'chair',
           'sofa', 'bookcase', 'board', 'clutter')
ALIASES = {'stairs': 'clutter'}


def _read_object(path: str) -> np.ndarray:
    try:
        arr = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError:  # a few S3DIS files carry stray characters inside numbers
        rows = []
        with open(path) as f:
            for line in f:
                vals = re.sub(r'[^0-9eE+\-. ]', '', line).split()
                if len(vals) >= 6:
                    rows.append([float(v) for v in vals[:6]])
        arr = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
    if arr.shape[1] < 6:
        raise ValueError(f's3dis converter: {path} must have 6 columns (x y z r g b), got {arr.shape[1]}')
    return arr[:, :6]


def convert_room(room_dir: str) -> np.ndarray:
    """All objects of one room -> ``(N, 7)`` float32 (xyz, rgb, label)."""
    ann = osp.join(room_dir, 'Annotations')
    if not osp.isdir(ann):
        raise FileNotFoundError(f's3dis converter: missing Annotations folder: {ann}')
    parts = []
    for path in sorted(glob.glob(osp.join(ann, '*.txt'))):
        name = osp.basename(path).split('_')[0]
        name = ALIASES.get(name, name)
        if name not in CLASSES:
            raise ValueError(f's3dis converter: {path}: unknown class "{name}" (known: {CLASSES})')
        obj = _read_object(path)
        parts.append(np.concatenate([obj, np.full((len(obj), 1), CLASSES.index(name), np.float32)], 1))
    if not parts:
        raise FileNotFoundError(f's3dis converter: no <class>_<i>.txt files in {ann}')
    return np.concatenate(parts)


def convert(src: str, dst: str, quiet: bool = False) -> list:
    """Convert every ``Area_*/<room>`` of ``src`` into ``dst/Area_k_<room>.npy``; returns the paths."""
    if not osp.isdir(src):
        raise FileNotFoundError(f's3dis converter: missing dataset folder: {src}')
    rooms = sorted(d for d in glob.glob(osp.join(src, 'Area_*', '*')) if osp.isdir(d))
    if not rooms:
        raise FileNotFoundError(f's3dis converter: no Area_*/<room> folders in {src}')
    os.makedirs(dst, exist_ok=True)
    out = []
    for room in track(rooms, desc='S3DIS rooms', quiet=quiet):
        area, name = room.split(os.sep)[-2:]
        path = osp.join(dst, f'{area}_{name}.npy')
        np.save(path, convert_room(room))
        out.append(path)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description='S3DIS Annotations -> per-room npy (xyzrgb + label)')
    parser.add_argument('src', help='Stanford3dDataset_v1.2_Aligned_Version folder')
    parser.add_argument('dst', help='output folder (e.g. data/s3dis)')
    add_quiet_argument(parser)
    args = parser.parse_args(argv)
    paths = convert(args.src, args.dst, args.quiet)
    print(f'{len(paths)} rooms converted into {args.dst}')


if __name__ == '__main__':
    main()
