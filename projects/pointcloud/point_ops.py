"""Point ops of the project, once: sampling, neighbour search, grouping, interpolation.

Two input forms are supported everywhere:

* **dense**: ``pos`` of shape ``(B, N, 3)`` with an optional padding ``mask`` ``(B, N)``
  (True = real point), as produced by :func:`torch_geometric.utils.to_dense_batch`;
* **ragged** (PyG): ``pos`` of shape ``(P, 3)`` with a sorted ``batch`` vector ``(P,)``.

Results are deterministic: farthest point sampling starts at index 0 of each cloud and then
picks the point with the largest distance to the selected set (first index on ties), as the
CUDA PointNet++ kernel does. Distance matrices are computed in chunks of query points so
that at most ``CHUNK_ELEMENTS`` distances exist at a time.

When ``torch_cluster`` is importable the ragged functions call it; otherwise (and always
for the dense functions) a pure PyTorch path runs. Both return the same indices on data
without distance ties (kNN neighbours are sorted by distance in both paths).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

try:  # optional compiled backend
    import torch_cluster  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    torch_cluster = None

#: upper bound on the number of pairwise distances held at once (per call).
CHUNK_ELEMENTS = 1 << 24

__all__ = [
    'square_distance', 'farthest_point_sample', 'knn', 'ball_query', 'gather_points',
    'group_points', 'knn_interpolate', 'fps', 'knn_ragged', 'radius_ragged', 'to_dense',
    'CHUNK_ELEMENTS',
]


def _shape(x: Tensor) -> str:
    return '(' + ', '.join(str(s) for s in x.shape) + ')'


def _check_dense(name: str, pos: Tensor, mask: Optional[Tensor] = None, what: str = 'pos') -> None:
    if not isinstance(pos, Tensor) or pos.dim() != 3:
        got = _shape(pos) if isinstance(pos, Tensor) else type(pos).__name__
        raise ValueError(f'{name} expects dense {what} of shape (B, N, D), got {got}')
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != tuple(pos.shape[:2])):
        raise ValueError(f'{name} expects a bool mask of shape {tuple(pos.shape[:2])} for {what}, '
                         f'got dtype {mask.dtype} shape {_shape(mask)}')


def _chunk_size(num_ref: int, batch: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, num_ref * batch))


def square_distance(src: Tensor, dst: Tensor) -> Tensor:
    r"""Squared Euclidean distances :math:`\|s_i - d_j\|^2`: ``(B, N, D), (B, M, D) -> (B, N, M)``.

    Computed by direct differences (exact, no cancellation); callers chunk over N.
    """
    return (src.unsqueeze(2) - dst.unsqueeze(1)).pow(2).sum(-1)


def farthest_point_sample(pos: Tensor, num_samples: int, mask: Optional[Tensor] = None) -> Tensor:
    r"""Farthest point sampling on dense clouds.

    .. math::
        i_0 = 0,\qquad i_{t+1} = \arg\max_j \min_{s \le t} \|p_j - p_{i_s}\|^2

    Args:
        pos: ``(B, N, D)`` coordinates.
        num_samples: number S of points to pick per cloud.
        mask: optional ``(B, N)`` bool, True = real point; padded points are never picked and
            the first real point must be at index 0 (``to_dense_batch`` layout). A cloud with
            fewer than S real points repeats its first point after exhausting them.

    Returns:
        ``(B, S)`` long indices into N.
    """
    _check_dense('farthest_point_sample', pos, mask)
    b, n, _ = pos.shape
    if n == 0:
        raise ValueError('farthest_point_sample got clouds with N=0 points')
    pos = pos.detach()
    idx = pos.new_zeros(b, num_samples, dtype=torch.long)
    min_dist = pos.new_full((b, n), float('inf'))
    if mask is not None:
        min_dist = min_dist.masked_fill(~mask, -1.0)
    arange = torch.arange(b, device=pos.device)
    last = torch.zeros(b, dtype=torch.long, device=pos.device)
    for t in range(1, num_samples):
        d = (pos - pos[arange, last].unsqueeze(1)).pow(2).sum(-1)
        min_dist = torch.minimum(min_dist, d)
        last = min_dist.argmax(dim=1)
        idx[:, t] = last
    return idx


def knn(query: Tensor, ref: Tensor, k: int, ref_mask: Optional[Tensor] = None,
        return_dist: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    r"""The k nearest ``ref`` points of every ``query`` point, sorted by distance.

    Args:
        query: ``(B, M, D)``; ref: ``(B, N, D)``.
        k: neighbours per query. If a cloud has fewer than k real points, the missing slots
            repeat the nearest neighbour.
        ref_mask: optional ``(B, N)`` bool, True = real reference point.
        return_dist: also return the squared distances ``(B, M, k)``.

    Returns:
        ``(B, M, k)`` long indices into N (and distances if asked).
    """
    _check_dense('knn', query, what='query')
    _check_dense('knn', ref, ref_mask, what='ref')
    if query.shape[0] != ref.shape[0] or query.shape[2] != ref.shape[2]:
        raise ValueError(f'knn: query {_shape(query)} and ref {_shape(ref)} must share B and D')
    b, m, _ = query.shape
    n = ref.shape[1]
    kk = min(k, n)
    idx_chunks, dist_chunks = [], []
    step = _chunk_size(n, b)
    for s in range(0, m, step):
        d = square_distance(query[:, s:s + step], ref)
        if ref_mask is not None:
            d = d.masked_fill(~ref_mask.unsqueeze(1), float('inf'))
        dist, idx = d.topk(kk, dim=-1, largest=False, sorted=True)
        idx_chunks.append(idx)
        dist_chunks.append(dist)
    idx = torch.cat(idx_chunks, 1) if idx_chunks else query.new_zeros(b, 0, kk, dtype=torch.long)
    dist = torch.cat(dist_chunks, 1) if dist_chunks else query.new_zeros(b, 0, kk)
    if kk < k:  # fewer points than k: pad with the nearest one
        pad = k - kk
        idx = torch.cat([idx, idx[..., :1].expand(-1, -1, pad)], -1)
        dist = torch.cat([dist, dist[..., :1].expand(-1, -1, pad)], -1)
    invalid = torch.isinf(dist)
    if invalid.any():
        idx = torch.where(invalid, idx[..., :1].expand_as(idx), idx)
        dist = torch.where(invalid, dist[..., :1].expand_as(dist), dist)
    return (idx, dist) if return_dist else idx


def ball_query(query: Tensor, ref: Tensor, radius: float, k: int,
               ref_mask: Optional[Tensor] = None) -> Tensor:
    r"""PointNet++ ball query: the first k ``ref`` points (in index order) with
    :math:`\|r_j - q_i\| < radius`; empty slots repeat the first hit (index 0 if none).

    Shapes: ``(B, M, D), (B, N, D) -> (B, M, k)`` long.
    """
    _check_dense('ball_query', query, what='query')
    _check_dense('ball_query', ref, ref_mask, what='ref')
    b, m, _ = query.shape
    n = ref.shape[1]
    out = []
    step = _chunk_size(n, b)
    arange = torch.arange(n, device=ref.device)
    for s in range(0, m, step):
        d = square_distance(query[:, s:s + step], ref)
        inside = d < radius * radius
        if ref_mask is not None:
            inside &= ref_mask.unsqueeze(1)
        # rank hits by index: hits keep their index, misses go to n; sort and keep k
        key = torch.where(inside, arange, torch.full_like(arange, n).expand_as(inside))
        key = key.sort(dim=-1).values[..., :k]
        if key.shape[-1] < k:
            key = torch.cat([key, key.new_full((*key.shape[:2], k - key.shape[-1]), n)], -1)
        first = key[..., :1]
        first = torch.where(first == n, torch.zeros_like(first), first)
        out.append(torch.where(key == n, first.expand_as(key), key))
    return torch.cat(out, 1) if out else query.new_zeros(b, 0, k, dtype=torch.long)


def gather_points(x: Tensor, idx: Tensor) -> Tensor:
    """Gather ``x`` ``(B, N, C)`` at ``idx`` ``(B, *S)`` -> ``(B, *S, C)``."""
    if x.dim() != 3 or idx.shape[0] != x.shape[0]:
        raise ValueError(f'gather_points expects x (B, N, C) and idx (B, ...), got x {_shape(x)} '
                         f'and idx {_shape(idx)}')
    b = x.shape[0]
    flat = idx.reshape(b, -1)
    out = x.gather(1, flat.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return out.reshape(*idx.shape, x.shape[-1])


def group_points(feat: Tensor, centre_idx: Tensor, neighbour_idx: Tensor,
                 relative: bool = True) -> Tensor:
    r"""Group neighbour features around centres, PCT style.

    .. math:: g_{ij} = [f_{n(i,j)} - f_{c(i)},\; f_{c(i)}]

    Args:
        feat: ``(B, N, C)``; centre_idx: ``(B, S)``; neighbour_idx: ``(B, S, K)``.
        relative: if False return the raw neighbour features ``(B, S, K, C)``.

    Returns:
        ``(B, S, K, 2C)`` (or ``(B, S, K, C)``).
    """
    nb = gather_points(feat, neighbour_idx)
    if not relative:
        return nb
    centre = gather_points(feat, centre_idx).unsqueeze(2)
    return torch.cat([nb - centre, centre.expand_as(nb)], dim=-1)


def knn_interpolate(x: Tensor, pos_src: Tensor, pos_dst: Tensor, k: int = 3,
                    src_mask: Optional[Tensor] = None, eps: float = 1e-16) -> Tensor:
    r"""Inverse-distance interpolation from ``pos_src`` to ``pos_dst`` (PointNet++ feature propagation).

    .. math::
        f(y) = \frac{\sum_{i=1}^{k} w_i f(x_i)}{\sum_{i=1}^{k} w_i},\qquad
        w_i = \frac{1}{\max(\|y - x_i\|^2, \epsilon)}

    Shapes: x ``(B, N, C)``, pos_src ``(B, N, 3)``, pos_dst ``(B, M, 3)`` -> ``(B, M, C)``.
    """
    idx, dist = knn(pos_dst, pos_src, k, ref_mask=src_mask, return_dist=True)
    w = 1.0 / dist.clamp_min(eps)
    w = w / w.sum(-1, keepdim=True)
    return (gather_points(x, idx) * w.unsqueeze(-1)).sum(2)


# ----------------------------------------------------------------------------------------
# ragged (PyG) forms
# ----------------------------------------------------------------------------------------

def to_dense(x: Tensor, batch: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """``(P, C)`` + ``batch`` -> ``(B, Nmax, C)`` and mask ``(B, Nmax)``; a thin wrapper of PyG."""
    from torch_geometric.utils import to_dense_batch
    if batch is None:
        return x.unsqueeze(0), torch.ones(1, x.shape[0], dtype=torch.bool, device=x.device)
    return to_dense_batch(x, batch)


def _dense_to_flat(idx: Tensor, mask_out: Tensor, ptr: Tensor) -> Tensor:
    """Dense per-cloud indices (B, S) -> global indices of the ragged tensor, masked."""
    return (idx + ptr[:-1].unsqueeze(1))[mask_out]


def _ptr(batch: Tensor, size: int) -> Tensor:
    counts = torch.bincount(batch, minlength=size)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def _num_graphs(batch: Optional[Tensor]) -> int:
    return int(batch.max()) + 1 if batch is not None and batch.numel() else 1


def fps(pos: Tensor, batch: Optional[Tensor] = None, ratio: float = 0.5) -> Tensor:
    r"""Farthest point sampling on a ragged batch: :math:`\lceil ratio \cdot n_b \rceil` points of
    every cloud, first point of each cloud first. Returns global indices into ``pos`` ``(P, D)``.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f'fps: ratio must be in (0, 1], got {ratio}')
    if batch is None:
        batch = pos.new_zeros(pos.shape[0], dtype=torch.long)
    if torch_cluster is not None:
        return torch_cluster.fps(pos, batch, ratio=ratio, random_start=False)
    b = _num_graphs(batch)
    ptr = _ptr(batch, b)
    counts = ptr[1:] - ptr[:-1]
    num = torch.ceil(counts.double() * ratio).long()
    dense, mask = to_dense(pos, batch)
    idx = farthest_point_sample(dense, int(num.max()), mask)
    keep = torch.arange(idx.shape[1], device=pos.device).unsqueeze(0) < num.unsqueeze(1)
    return _dense_to_flat(idx, keep, ptr)


def _dense_pair(x: Tensor, y: Tensor, batch_x: Optional[Tensor], batch_y: Optional[Tensor]):
    """Dense views of two ragged point sets over the same number of clouds b.

    Returns ``(batch_x, batch_y, b, x_dense, x_mask, y_dense, y_mask)``.
    """
    if batch_x is None:
        batch_x = x.new_zeros(x.shape[0], dtype=torch.long)
    if batch_y is None:
        batch_y = y.new_zeros(y.shape[0], dtype=torch.long)
    b = max(_num_graphs(batch_x), _num_graphs(batch_y))
    xd, xm = to_dense(x, batch_x)
    yd, ym = to_dense(y, batch_y)
    if xd.shape[0] < b:
        pad = b - xd.shape[0]
        xd = torch.cat([xd, xd.new_zeros(pad, *xd.shape[1:])])
        xm = torch.cat([xm, xm.new_zeros(pad, xm.shape[1])])
    return batch_x, batch_y, b, xd, xm, yd, ym


def _dense_to_edges(idx: Tensor, valid: Tensor, batch_x: Tensor, batch_y: Tensor, b: int) -> Tensor:
    """Dense neighbour indices ``idx`` (b, Ny, K) where ``valid`` -> PyG ``(2, E)`` (row: y, col: x)."""
    ptr_x, ptr_y = _ptr(batch_x, b), _ptr(batch_y, b)
    col = (idx + ptr_x[:-1].view(-1, 1, 1))[valid]
    row = (torch.arange(idx.shape[1], device=idx.device).view(1, -1, 1)
           + ptr_y[:-1].view(-1, 1, 1)).expand_as(idx)[valid]
    return torch.stack([row, col])


def knn_ragged(x: Tensor, y: Tensor, k: int, batch_x: Optional[Tensor] = None,
               batch_y: Optional[Tensor] = None) -> Tensor:
    r"""For every point of ``y`` its k nearest points of ``x`` within the same cloud.

    Returns the PyG assignment ``(2, E)``: row 0 indexes ``y``, row 1 indexes ``x`` (as
    ``torch_cluster.knn``), neighbours of a query ordered by distance.
    """
    if torch_cluster is not None:
        return torch_cluster.knn(x, y, k, batch_x, batch_y)
    batch_x, batch_y, b, xd, xm, yd, ym = _dense_pair(x, y, batch_x, batch_y)
    idx, dist = knn(yd, xd, k, ref_mask=xm, return_dist=True)
    kk = min(k, xd.shape[1])
    # keep only true neighbours (a cloud with fewer than k points yields fewer)
    counts_x = torch.bincount(batch_x, minlength=b)
    rank = torch.arange(idx.shape[-1], device=x.device)
    valid = ym.unsqueeze(-1) & (rank < counts_x.clamp(max=kk).view(-1, 1, 1)) & ~torch.isinf(dist)
    return _dense_to_edges(idx, valid, batch_x, batch_y, b)


def radius_ragged(x: Tensor, y: Tensor, r: float, batch_x: Optional[Tensor] = None,
                  batch_y: Optional[Tensor] = None, max_num_neighbors: int = 32) -> Tensor:
    """Ball query on a ragged batch: for each ``y`` point, up to ``max_num_neighbors`` points of
    ``x`` (same cloud) with distance < r, in index order. Returns ``(2, E)`` as :func:`knn_ragged`.
    """
    if torch_cluster is not None:
        return torch_cluster.radius(x, y, r, batch_x, batch_y, max_num_neighbors=max_num_neighbors)
    batch_x, batch_y, b, xd, xm, yd, ym = _dense_pair(x, y, batch_x, batch_y)
    idx = ball_query(yd, xd, r, max_num_neighbors, ref_mask=xm)
    nb = gather_points(xd, idx)
    valid = ((nb - yd.unsqueeze(2)).pow(2).sum(-1) < r * r) & gather_points(
        xm.unsqueeze(-1).float(), idx).squeeze(-1).bool() & ym.unsqueeze(-1)
    # ball_query repeats the first hit in empty slots: keep the first occurrence only
    first_rep = torch.zeros_like(valid)
    first_rep[..., 1:] = idx[..., 1:] == idx[..., :1]
    valid &= ~first_rep
    return _dense_to_edges(idx, valid, batch_x, batch_y, b)


def num_fps_samples(n: int, ratio: float) -> int:
    """Number of points :func:`fps` keeps from a cloud of n points."""
    return int(math.ceil(n * ratio))
