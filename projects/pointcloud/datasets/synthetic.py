"""Seeded procedural point clouds: a small real learning task that needs no files.

``task='cls'``: classify the primitive (:data:`PRIMITIVES`), sampled on its surface with a
random anisotropic scale (0.75-1.25 per axis), a random rotation about the up axis (z) and a
tilt of up to ``max_tilt`` radians, Gaussian noise, centred and scaled to the unit sphere.

``task='part'``: composite shapes (:data:`COMPOSITES`) whose points carry part labels; the part
ids are global across categories, as in ShapeNetPart (``category_parts`` lists them).

Every sample is generated from ``seed`` and its index at construction (deterministic); the
``test`` split uses another seed stream than ``train``.
"""
from __future__ import annotations

import numpy as np

from ..registry import DATASETS
from .base import PointCloudDataset

PRIMITIVES = ('sphere', 'cube', 'cylinder', 'cone', 'torus', 'pyramid')
COMPOSITES = {  # category: part names (global ids in order of appearance)
    'mushroom': ('stem', 'cap'), 'table': ('top', 'legs'),
    'lamp': ('base', 'pole', 'shade'), 'snowman': ('body', 'head'),
}
CATEGORY_PARTS = []
_n = 0
for _parts in COMPOSITES.values():
    CATEGORY_PARTS.append(list(range(_n, _n + len(_parts))))
    _n += len(_parts)


def _sphere(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _cube(rng, n):
    p = rng.uniform(-1, 1, size=(n, 3))
    axis = rng.randint(3, size=n)
    p[np.arange(n), axis] = rng.choice([-1.0, 1.0], size=n)
    return p


def _cylinder(rng, n, r=0.6, h=2.0):
    side = 2 * np.pi * r * h
    caps = 2 * np.pi * r * r
    on_side = rng.random_sample(n) < side / (side + caps)
    t = rng.uniform(0, 2 * np.pi, n)
    rad = np.where(on_side, r, r * np.sqrt(rng.random_sample(n)))
    z = np.where(on_side, rng.uniform(-h / 2, h / 2, n), rng.choice([-h / 2, h / 2], n))
    return np.stack([rad * np.cos(t), rad * np.sin(t), z], 1)


def _cone(rng, n, r=1.0, h=2.0):
    lateral = np.pi * r * np.hypot(r, h)
    base = np.pi * r * r
    on_side = rng.random_sample(n) < lateral / (lateral + base)
    t = rng.uniform(0, 2 * np.pi, n)
    u = np.sqrt(rng.random_sample(n))  # uniform on the surface: density grows with radius
    rad = r * u
    z = np.where(on_side, h / 2 - h * u, -h / 2)
    return np.stack([rad * np.cos(t), rad * np.sin(t), z], 1)


def _torus(rng, n, big=0.8, small=0.3):
    a, b = rng.uniform(0, 2 * np.pi, (2, n))
    return np.stack([(big + small * np.cos(b)) * np.cos(a), (big + small * np.cos(b)) * np.sin(a),
                     small * np.sin(b)], 1)


def _triangles(rng, n, tris):
    tris = np.asarray(tris, np.float64)
    areas = 0.5 * np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)
    k = rng.choice(len(tris), size=n, p=areas / areas.sum())
    u, v = rng.random_sample((2, n))
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = tris[k]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def _pyramid(rng, n):
    a, b, c, d, top = [-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [0, 0, 1]
    return _triangles(rng, n, [[a, b, c], [a, c, d], [a, b, top], [b, c, top], [c, d, top], [d, a, top]])


_SAMPLERS = dict(sphere=_sphere, cube=_cube, cylinder=_cylinder, cone=_cone, torus=_torus,
                 pyramid=_pyramid)


def _box(rng, n, size, centre):
    return _cube(rng, n) * np.asarray(size) / 2 + np.asarray(centre)


def _composite(rng, category, n):
    """Points and local part index of one composite shape."""
    s = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    if category == 'mushroom':
        h, r = s(0.8, 1.4), s(0.15, 0.3)
        cap_r = s(0.7, 1.0)
        stem = _cylinder(rng, n, r=r, h=h) + [0, 0, h / 2]
        cap = _sphere(rng, n) * [cap_r, cap_r, cap_r * s(0.4, 0.7)]
        cap[:, 2] = np.abs(cap[:, 2])
        cap += [0, 0, h]
        pieces, weights = [stem, cap], [0.35, 0.65]
    elif category == 'table':
        w, d, h = s(1.2, 2.0), s(0.8, 1.4), s(0.7, 1.1)
        top = _box(rng, n, [w, d, 0.08], [0, 0, h])
        legs = np.concatenate([_cylinder(rng, n // 4 + 1, r=0.05, h=h) + [sx * (w / 2 - 0.1), sy * (d / 2 - 0.1), h / 2]
                               for sx in (-1, 1) for sy in (-1, 1)])
        pieces, weights = [top, legs], [0.6, 0.4]
    elif category == 'lamp':
        h = s(1.2, 1.8)
        base = _cylinder(rng, n, r=s(0.3, 0.5), h=0.08) + [0, 0, 0.04]
        pole = _cylinder(rng, n, r=0.04, h=h) + [0, 0, h / 2]
        shade = _cone(rng, n, r=s(0.35, 0.6), h=0.5) * [1, 1, -1] + [0, 0, h]
        pieces, weights = [base, pole, shade], [0.3, 0.2, 0.5]
    elif category == 'snowman':
        r1, r2 = s(0.5, 0.7), s(0.25, 0.4)
        body = _sphere(rng, n) * r1 + [0, 0, r1]
        head = _sphere(rng, n) * r2 + [0, 0, 2 * r1 + r2 * 0.8]
        pieces, weights = [body, head], [0.65, 0.35]
    else:
        raise ValueError(f'unknown composite category {category!r}; known: {list(COMPOSITES)}')
    counts = rng.multinomial(n - len(pieces), weights) + 1
    pts, lab = [], []
    for i, (p, c) in enumerate(zip(pieces, counts)):
        pts.append(p[rng.choice(len(p), c, replace=len(p) < c)])
        lab.append(np.full(c, i))
    return np.concatenate(pts), np.concatenate(lab)


def _rotate(rng, pts, max_tilt):
    t = rng.uniform(0, 2 * np.pi)
    rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    a = rng.uniform(-max_tilt, max_tilt)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return pts @ (rz @ rx).T


def _normalise(pts):
    pts = pts - pts.mean(0)
    return pts / np.linalg.norm(pts, axis=1).max()


@DATASETS.register_module()
class SyntheticPrimitives(PointCloudDataset):
    """Procedural primitives for classification (``task='cls'``) or part segmentation (``'part'``).

    Args:
        num_samples: clouds in the split.
        num_points: points per cloud.
        task: ``'cls'`` or ``'part'``.
        split: ``'train'`` or ``'test'`` (different seed streams).
        seed: base seed.
        noise: std of the Gaussian noise on coordinates.
        max_tilt: largest tilt (radians) away from the up axis.

    Samples: ``pos`` (N, 3) float32 and ``label`` (cls) or ``seg`` + ``category`` (part).
    """

    def __init__(self, num_samples: int = 600, num_points: int = 1024, task: str = 'cls',
                 split: str = 'train', seed: int = 0, noise: float = 0.01, max_tilt: float = 0.3,
                 pipeline=None, test_mode: bool = False):
        super().__init__('', pipeline, test_mode)
        if task not in ('cls', 'part'):
            raise ValueError(f'SyntheticPrimitives: task must be "cls" or "part", got {task!r}')
        if split not in ('train', 'test'):
            raise ValueError(f'SyntheticPrimitives: split must be "train" or "test", got {split!r}')
        self.task = task
        stream = 0 if split == 'train' else 1
        classes = PRIMITIVES if task == 'cls' else tuple(COMPOSITES)
        self.classes = classes
        self.samples = []
        for i in range(num_samples):
            rng = np.random.RandomState([seed, stream, i])
            label = i % len(classes)
            if task == 'cls':
                pts = _SAMPLERS[classes[label]](rng, num_points) * rng.uniform(0.75, 1.25, 3)
                part = None
            else:
                pts, part = _composite(rng, classes[label], num_points)
                part = part + CATEGORY_PARTS[label][0]
            pts = _rotate(rng, pts, max_tilt) + rng.normal(scale=noise, size=pts.shape)
            self.samples.append((_normalise(pts).astype(np.float32), label, part))

    @property
    def metainfo(self) -> dict:
        meta = dict(classes=self.classes)
        if self.task == 'part':
            meta['category_parts'] = CATEGORY_PARTS
        return meta

    def get_sample(self, idx: int) -> dict:
        pts, label, part = self.samples[idx]
        if self.task == 'cls':
            return dict(pos=pts.copy(), label=label)
        return dict(pos=pts.copy(), seg=part.copy(), category=label)
