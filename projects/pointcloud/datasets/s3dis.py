"""S3DIS rooms converted by ``tools/dataset_converters/s3dis.py`` (``Area_k_<room>.npy``, (N, 7):
x y z r g b label).

Training samples are 1 m x 1 m blocks (all heights) around a random point of a random room
(rooms weighted by size), ``num_points`` points each, with 9 channels
``[x - cx, y - cy, z, r/255, g/255, b/255, x/X, y/Y, z/Z]`` (block-centred xyz, colour, xyz
normalised by the room extent), as in PointNet/PointNet++/PCT.

Evaluation samples are whole rooms: a grid of blocks (``stride``) covers the room, the points of
each block are cut into chunks of ``num_points`` (filled by repetition), and the network's
scores are summed per room point over all blocks containing it (votes); the metric runs over
every point of the room.
"""
from __future__ import annotations

import glob
import os.path as osp

import numpy as np
import torch
from torch_geometric.data import Data

from projects.bad_data import BadSampleError, bad_sample
from ..registry import DATASETS
from .base import PointCloudDataset, check_labels, check_points, require

S3DIS_CLASSES = ('ceiling', 'floor', 'wall', 'beam', 'column', 'window', 'door', 'table', 'chair',
                 'sofa', 'bookcase', 'board', 'clutter')


def block_features(points: np.ndarray, centre_xy: np.ndarray, room_max: np.ndarray) -> np.ndarray:
    """``(n, 6)`` xyzrgb -> the 9 block channels (see module docstring)."""
    xyz = points[:, :3]
    return np.concatenate([
        xyz - np.array([centre_xy[0], centre_xy[1], 0.0], np.float32),
        points[:, 3:6] / 255.0,
        xyz / np.maximum(room_max, 1e-6)], 1).astype(np.float32)


@DATASETS.register_module()
class S3DISDataset(PointCloudDataset):
    """S3DIS blocks (train) or whole rooms (test).

    Args:
        data_root: folder of converted rooms.
        split: ``'train'`` (areas other than ``test_area``) or ``'test'`` (``test_area``).
        test_area: held-out area (5 in the standard protocol).
        num_points: points per block.
        block_size: block side in metres; stride: grid step of evaluation blocks.
        sample_rate: training epoch length = sample_rate * all points / num_points blocks.
        min_points: a training block with fewer points is redrawn (up to 10 times).
        skip_bad: log and leave out bad rooms instead of raising.

    A room file that is not a readable ``(N, 7)`` array is named when the dataset is built; an
    empty room, NaN/Inf values or labels outside 0..12 when the room is first loaded.
    """

    METAINFO = dict(classes=S3DIS_CLASSES)

    def __init__(self, data_root: str = 'data/s3dis', split: str = 'train', test_area: int = 5,
                 num_points: int = 4096, block_size: float = 1.0, stride: float = 0.5,
                 sample_rate: float = 1.0, min_points: int = 1024, pipeline=None,
                 test_mode: bool = False, skip_bad: bool = False):
        super().__init__(data_root, pipeline, test_mode, skip_bad)
        name = type(self).__name__
        if split not in ('train', 'test'):
            raise ValueError(f'{name}: split must be "train" or "test", got {split!r}')
        require(data_root, 'converted rooms folder (run tools/dataset_converters/s3dis.py)', name)
        files = sorted(glob.glob(osp.join(data_root, 'Area_*_*.npy')))
        area = f'Area_{test_area}_'
        files = [f for f in files if (osp.basename(f).startswith(area)) == (split == 'test')]
        if not files:
            raise FileNotFoundError(f'{name}: no {split} rooms (Area_<k>_<room>.npy, test area '
                                    f'{test_area}) in {data_root}')
        self.split, self.num_points, self.block_size, self.stride = split, num_points, block_size, stride
        self.min_points = min_points
        # memory-mapped: the full dataset is several GB; only the rooms in use are read
        self.files, self.rooms = [], []
        for f in files:
            try:
                room = np.load(f, mmap_mode='r')
            except (ValueError, OSError, EOFError) as err:
                self.skip_bad.skip(bad_sample(name, f, 'not a readable .npy array (truncated or '
                                              f'corrupt: {str(err).splitlines()[0]})'), key=f)
                continue
            if room.ndim != 2 or room.shape[1] != 7:
                self.skip_bad.skip(bad_sample(name, f, f'must be (N, 7) xyzrgb+label, got {room.shape}'), key=f)
                continue
            self.files.append(f)
            self.rooms.append(room)
        if not self.rooms:
            raise BadSampleError(f'{name}: no readable {split} rooms in {data_root}')
        self.room_names = [osp.basename(f)[:-4] for f in self.files]
        self._extent: dict = {}  # room -> (min xyz, extent), filled when the room is first loaded
        sizes = np.array([len(r) for r in self.rooms], np.float64)
        if split == 'train':
            self.room_prob = sizes / max(sizes.sum(), 1.0)
            n = max(1, int(np.ceil(sizes.sum() * sample_rate / num_points)))
            self.samples = list(range(n))
        else:
            self.samples = list(range(len(self.rooms)))

    def _room(self, r: int):
        """Room ``r`` as (xyzrgb with xyz shifted to start at 0, labels, extent); checked."""
        name, path = type(self).__name__, self.files[r]
        room = np.asarray(self.rooms[r], dtype=np.float32)
        if r not in self._extent:
            check_points(room[:, :6], name, path)
            check_labels(room[:, 6], len(S3DIS_CLASSES), name, path, key='column 7 (label)')
            low = room[:, :3].min(0)
            self._extent[r] = (low, room[:, :3].max(0) - low)
        low, extent = self._extent[r]
        pts = room[:, :6].copy()
        pts[:, :3] -= low
        return pts, room[:, 6].astype(np.int64), extent

    def _train_room(self):
        """A room drawn by size whose data pass the checks (bad ones, with skip_bad, leave the draw)."""
        while True:
            r = np.random.choice(len(self.rooms), p=self.room_prob)
            try:
                return self._room(r)
            except BadSampleError as err:
                self.skip_bad.skip(err, key=self.files[r])
                self.room_prob[r] = 0.0
                if self.room_prob.sum() == 0:
                    raise BadSampleError(f'{type(self).__name__}: every training room is bad') from None
                self.room_prob /= self.room_prob.sum()

    def get_sample(self, idx: int) -> dict:
        if self.split == 'test':
            return self.room_blocks(idx)
        pts, labels, room_max = self._train_room()
        half = self.block_size / 2
        for _ in range(10):
            centre = pts[np.random.randint(len(pts)), :2]
            sel = np.nonzero((np.abs(pts[:, 0] - centre[0]) <= half)
                             & (np.abs(pts[:, 1] - centre[1]) <= half))[0]
            if len(sel) >= self.min_points:
                break
        choice = np.random.choice(sel, self.num_points, replace=len(sel) < self.num_points)
        feat = block_features(pts[choice], centre, room_max)
        return dict(pos=feat[:, :3].copy(), feat=feat, seg=labels[choice])

    def room_blocks(self, r: int) -> Data:
        """All evaluation blocks of room ``r`` as one ``Data`` (fields in PCTSegmentor._predict_rooms)."""
        pts, labels, room_max = self._room(r)
        rng = np.random.RandomState(r)
        n_x = max(1, int(np.ceil((room_max[0] - self.block_size) / self.stride)) + 1)
        n_y = max(1, int(np.ceil((room_max[1] - self.block_size) / self.stride)) + 1)
        feats, idxs, blocks = [], [], []
        b = 0
        for i in range(n_x):
            for j in range(n_y):
                x0, y0 = i * self.stride, j * self.stride
                sel = np.nonzero((pts[:, 0] >= x0) & (pts[:, 0] <= x0 + self.block_size)
                                 & (pts[:, 1] >= y0) & (pts[:, 1] <= y0 + self.block_size))[0]
                if len(sel) == 0:
                    continue
                n_chunks = int(np.ceil(len(sel) / self.num_points))
                sel = rng.permutation(sel)
                fill = n_chunks * self.num_points - len(sel)
                sel = np.concatenate([sel, rng.choice(sel, fill, replace=True)]) if fill else sel
                centre = np.array([x0 + self.block_size / 2, y0 + self.block_size / 2], np.float32)
                for c in range(n_chunks):
                    chunk = sel[c * self.num_points:(c + 1) * self.num_points]
                    feats.append(block_features(pts[chunk], centre, room_max))
                    idxs.append(chunk)
                    blocks.append(np.full(len(chunk), b))
                    b += 1
        feat = torch.from_numpy(np.concatenate(feats))
        return Data(pos=feat[:, :3].clone(), x=feat, block=torch.from_numpy(np.concatenate(blocks)),
                    point_idx=torch.from_numpy(np.concatenate(idxs)),
                    room_size=torch.tensor([len(pts)]), y=torch.from_numpy(labels))

    def _load(self, idx: int):
        if self.split == 'test':  # whole rooms skip the pipeline: blocks are built here
            return self.room_blocks(idx)
        return super()._load(idx)
