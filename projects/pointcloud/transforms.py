"""Point-cloud transforms (TRANSFORMS, scope ``pointcloud``) and the PyG collate function.

A sample travels through the pipeline as a dict of numpy arrays: ``pos`` ``(N, 3)`` and any
per-point arrays among :data:`POINT_KEYS` (``normal``, ``color``, ``feat``, ``seg``), plus
per-cloud entries (``label``, ``category``, ...). :class:`PackPointCloud` ends the pipeline
with a :class:`torch_geometric.data.Data`; :func:`pointcloud_collate` batches those.
Random transforms draw from ``numpy.random`` (seeded per worker by mmengine).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.registry import FUNCTIONS
from torch_geometric.data import Batch, Data

from .registry import TRANSFORMS

#: arrays indexed by point; sampling, dropout and shuffling move them together with ``pos``.
POINT_KEYS = ('pos', 'normal', 'color', 'feat', 'seg')


def _check_pos(name: str, results: dict) -> np.ndarray:
    pos = results.get('pos')
    if pos is None or pos.ndim != 2 or pos.shape[1] != 3:
        got = None if pos is None else pos.shape
        raise ValueError(f'{name} expects results["pos"] of shape (N, 3), got {got}')
    return pos


def _select(results: dict, idx: np.ndarray) -> dict:
    for k in POINT_KEYS:
        if results.get(k) is not None:
            results[k] = results[k][idx]
    return results


@TRANSFORMS.register_module()
class NormalizeUnitSphere:
    r"""Centre at the centroid and scale into the unit sphere:
    :math:`p \leftarrow (p - \bar p) / \max_i \|p_i - \bar p\|`."""

    def __call__(self, results: dict) -> dict:
        pos = _check_pos('NormalizeUnitSphere', results).astype(np.float32)
        pos = pos - pos.mean(0, keepdims=True)
        scale = np.linalg.norm(pos, axis=1).max()
        results['pos'] = pos / scale if scale > 0 else pos
        return results


@TRANSFORMS.register_module()
class RandomScaleShift:
    """PCT recipe ``translate_pointcloud``: per-axis scale ~ U(scale) and shift ~ U(-shift, shift)."""

    def __init__(self, scale: Sequence[float] = (2. / 3., 3. / 2.), shift: float = 0.2,
                 anisotropic: bool = True):
        self.scale, self.shift, self.anisotropic = tuple(scale), shift, anisotropic

    def __call__(self, results: dict) -> dict:
        pos = _check_pos('RandomScaleShift', results)
        n = 3 if self.anisotropic else 1
        s = np.random.uniform(*self.scale, size=n).astype(np.float32)
        t = np.random.uniform(-self.shift, self.shift, size=3).astype(np.float32)
        results['pos'] = (pos * s + t).astype(np.float32)
        return results


@TRANSFORMS.register_module()
class RandomJitter:
    """Add clipped Gaussian noise ``clip(N(0, sigma^2), -clip, clip)`` to every coordinate."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05):
        self.sigma, self.clip = sigma, clip

    def __call__(self, results: dict) -> dict:
        pos = _check_pos('RandomJitter', results)
        noise = np.clip(self.sigma * np.random.randn(*pos.shape), -self.clip, self.clip)
        results['pos'] = (pos + noise).astype(np.float32)
        return results


@TRANSFORMS.register_module()
class RandomRotateUp:
    """Rotate ``pos`` (and ``normal``) by a uniform angle in ``angle`` (radians) about the up axis
    (``axis`` 0/1/2 = x/y/z; ModelNet40 HDF5 is y-up, S3DIS z-up)."""

    def __init__(self, axis: int = 2, angle: Sequence[float] = (0.0, 2 * np.pi)):
        if axis not in (0, 1, 2):
            raise ValueError(f'RandomRotateUp: axis must be 0, 1 or 2, got {axis!r}')
        self.axis, self.angle = axis, tuple(angle)

    def __call__(self, results: dict) -> dict:
        pos = _check_pos('RandomRotateUp', results)
        t = np.random.uniform(*self.angle)
        c, s = np.cos(t), np.sin(t)
        i, j = [a for a in range(3) if a != self.axis]
        rot = np.eye(3, dtype=np.float32)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        results['pos'] = (pos @ rot.T).astype(np.float32)
        if results.get('normal') is not None:
            results['normal'] = (results['normal'] @ rot.T).astype(np.float32)
        return results


@TRANSFORMS.register_module()
class RandomPointDropout:
    """PointNet++ point dropout: a ratio r ~ U(0, max_ratio) of the points is replaced by the
    first point (the size stays N)."""

    def __init__(self, max_ratio: float = 0.875):
        if not 0 <= max_ratio < 1:
            raise ValueError(f'RandomPointDropout: max_ratio must be in [0, 1), got {max_ratio}')
        self.max_ratio = max_ratio

    def __call__(self, results: dict) -> dict:
        n = _check_pos('RandomPointDropout', results).shape[0]
        ratio = np.random.random() * self.max_ratio
        idx = np.arange(n)
        idx[np.random.random(n) <= ratio] = 0
        return _select(results, idx)


@TRANSFORMS.register_module()
class ShufflePoints:
    """Permute the points (all per-point arrays together)."""

    def __call__(self, results: dict) -> dict:
        n = _check_pos('ShufflePoints', results).shape[0]
        return _select(results, np.random.permutation(n))


@TRANSFORMS.register_module()
class FixedPoints:
    """Keep exactly ``num_points`` points.

    ``mode='first'`` takes the first ones (PCT_Pytorch: the first 1024 of the 2048 HDF5 points),
    ``'random'`` samples without replacement (with replacement when the cloud is smaller).
    Clouds smaller than ``num_points`` are filled by repeating random points.
    """

    def __init__(self, num_points: int, mode: str = 'random'):
        if mode not in ('first', 'random'):
            raise ValueError(f'FixedPoints: mode must be "first" or "random", got {mode!r}')
        self.num_points, self.mode = num_points, mode

    def __call__(self, results: dict) -> dict:
        n = _check_pos('FixedPoints', results).shape[0]
        if n >= self.num_points:
            idx = (np.arange(self.num_points) if self.mode == 'first'
                   else np.random.choice(n, self.num_points, replace=False))
        else:
            idx = np.concatenate([np.arange(n), np.random.choice(n, self.num_points - n, replace=True)])
        return _select(results, idx)


@TRANSFORMS.register_module()
class PackPointCloud:
    """End of a pipeline: build a :class:`~torch_geometric.data.Data`.

    ``pos`` (N, 3) float; ``x`` = concatenation of ``feature_keys`` (None when it is just
    ``('pos',)``: the networks then read ``pos``); ``y`` = per-cloud ``label`` (1,) or per-point
    ``seg`` (N,); ``category`` (1,) when present; ``meta_keys`` copied as they are.
    """

    def __init__(self, feature_keys: Sequence[str] = ('pos',), label_key: str = 'label',
                 meta_keys: Sequence[str] = ()):
        self.feature_keys, self.label_key, self.meta_keys = tuple(feature_keys), label_key, tuple(meta_keys)

    def __call__(self, results: dict) -> Data:
        pos = _check_pos('PackPointCloud', results)
        data = Data(pos=torch.as_tensor(np.ascontiguousarray(pos), dtype=torch.float32))
        if self.feature_keys != ('pos',):
            missing = [k for k in self.feature_keys if results.get(k) is None]
            if missing:
                raise KeyError(f'PackPointCloud: feature_keys {list(self.feature_keys)} but the sample '
                               f'has no {missing} (it has {sorted(k for k, v in results.items() if v is not None)})')
            feats = [np.asarray(results[k], dtype=np.float32).reshape(pos.shape[0], -1)
                     for k in self.feature_keys]
            data.x = torch.from_numpy(np.ascontiguousarray(np.concatenate(feats, 1)))
        if self.label_key is not None:
            if results.get(self.label_key) is None:
                raise KeyError(f'PackPointCloud: label_key "{self.label_key}" is not in the sample '
                               f'(keys {sorted(results)})')
            data.y = torch.as_tensor(np.asarray(results[self.label_key]), dtype=torch.long).view(-1)
        if results.get('category') is not None:
            data.category = torch.as_tensor([int(results['category'])], dtype=torch.long)
        for k in self.meta_keys:
            setattr(data, k, results.get(k))
        return data


@FUNCTIONS.register_module()
def pointcloud_collate(data_batch: Sequence[Data]) -> dict:
    """Collate ``Data`` samples into one PyG ``Batch`` (``batch`` vector, concatenated points).

    Use as ``collate_fn=dict(type='pointcloud_collate')`` in a Runner dataloader config.
    Returns ``dict(inputs=Batch, data_samples=None)``, the form mmengine models take. Samples
    that are lists of test-time views (:class:`~projects.pointcloud.tta.TestTimeVotes`) give
    ``dict(inputs=[Batch of view 0, Batch of view 1, ...], data_samples=None)``.
    """
    if data_batch and all(isinstance(d, (list, tuple)) for d in data_batch):
        views = [pointcloud_collate(list(v))['inputs'] for v in zip(*data_batch)]
        return dict(inputs=views, data_samples=None)
    if not data_batch or not all(isinstance(d, Data) for d in data_batch):
        kinds = sorted({type(d).__name__ for d in data_batch})
        raise TypeError(f'pointcloud_collate expects torch_geometric Data samples (end the pipeline '
                        f'with PackPointCloud), got {kinds or "an empty batch"}')
    return dict(inputs=Batch.from_data_list(list(data_batch)), data_samples=None)


def build_pipeline(pipeline: Optional[Sequence]) -> list:
    """Build transforms from configs (dicts) or keep callables as they are."""
    out = []
    for t in pipeline or ():
        if isinstance(t, dict):
            out.append(TRANSFORMS.build(t))
        elif callable(t):
            out.append(t)
        else:
            raise TypeError(f'pipeline entries must be dicts or callables, got {type(t).__name__}')
    return out
