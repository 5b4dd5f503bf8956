"""Point ops, once: farthest point sampling, neighbour search, grouping, interpolation.

Two input forms, one implementation (the ragged functions densify and call the dense ones):

* **dense**: ``pos`` ``(B, N, D)`` with an optional padding ``mask`` ``(B, N)`` (True = real
  point, real points first in each row, as :func:`to_dense` and PyG's ``to_dense_batch`` lay
  them out);
* **ragged** (PyG): ``pos`` ``(P, D)`` with a sorted ``batch`` vector ``(P,)``.

Results are deterministic and exact. Farthest point sampling starts at index 0 of each cloud
and then picks the point farthest from the picked set (first index on ties), as the CUDA
PointNet++ kernel does. Squared distances are differences squared and added in coordinate
order, ``(dx^2 + dy^2) + dz^2``: no ``|a|^2 + |b|^2 - 2ab`` cancellation, and the same bits on
every backend, so every path returns the indices of the written-out reference loop.

Farthest point sampling is sequential in its samples; its backends (``backend='auto'`` picks
the first that applies, :func:`fps_backend` says which):

* ``'native'`` (CPU, float32/float64): a C loop built on first use (:mod:`attn_ops.native`),
  clouds spread over ``torch.get_num_threads()`` threads;
* ``'triton'`` (CUDA, float32/float64, N <= 16384): one Triton kernel, the sample loop inside it
  (:mod:`attn_ops.fps_triton`);
* ``'torch'`` (anywhere): a loop over samples in PyTorch, vectorised over the batch, in-place
  on preallocated buffers.

The ragged :func:`fps` and :func:`knn_ragged` call ``torch_cluster`` when it is importable
(same indices). kNN and ball query work in chunks of queries so that at most
:data:`CHUNK_ELEMENTS` distances exist at a time: no N x N matrix above that size.
"""
from __future__ import annotations

import ctypes
import math
import warnings
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .layouts import _shape
from .native import NativeBuildError, load_library

try:  # optional compiled backend of the ragged ops
    import torch_cluster  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    torch_cluster = None

#: upper bound on the number of pairwise distances kNN and ball query hold at once (per call).
CHUNK_ELEMENTS = 1 << 22
FPS_BACKENDS = ('auto', 'native', 'triton', 'torch')

__all__ = [
    'CHUNK_ELEMENTS', 'FPS_BACKENDS', 'square_distance', 'farthest_point_sample', 'fps_backend',
    'knn', 'ball_query', 'gather_points', 'group_points', 'knn_interpolate', 'to_dense', 'fps',
    'knn_ragged',
]


def _check_dense(name: str, pos: Tensor, mask: Optional[Tensor] = None, what: str = 'pos') -> None:
    if not isinstance(pos, Tensor) or pos.dim() != 3:
        got = _shape(pos) if isinstance(pos, Tensor) else type(pos).__name__
        raise ValueError(f'{name} expects dense {what} of shape (B, N, D), got {got}')
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != tuple(pos.shape[:2])):
        raise ValueError(f'{name} expects a bool mask of shape {tuple(pos.shape[:2])} for {what}, '
                         f'got dtype {mask.dtype} shape {_shape(mask)}')


# ----------------------------------------------------------------------------------------
# distances
# ----------------------------------------------------------------------------------------

def _sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """``sum_c (a[..., c] - b[..., c])^2`` over the last dim (broadcast), added in coordinate order.

    Two buffers of the output's size, in place, unless autograd needs the graph.
    """
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        out = (a[..., 0] - b[..., 0]).square()
        for c in range(1, a.shape[-1]):
            out = out + (a[..., c] - b[..., c]).square()
        return out
    out = (a[..., 0] - b[..., 0]).square_()
    diff = torch.empty_like(out) if a.shape[-1] > 1 else out
    for c in range(1, a.shape[-1]):
        out.add_(torch.sub(a[..., c], b[..., c], out=diff).square_())
    return out


def square_distance(src: Tensor, dst: Tensor) -> Tensor:
    r"""Squared Euclidean distances :math:`\|s_i - d_j\|^2`: ``(B, N, D), (B, M, D) -> (B, N, M)``.

    Exact (differences, no cancellation), coordinates added in order; forms the whole
    ``(B, N, M)`` matrix, so callers chunk over N.
    """
    return _sq_dist(src.unsqueeze(2), dst.unsqueeze(1))


def _query_chunk(num_ref: int, batch: int) -> int:
    """Queries per chunk so that a chunk holds at most CHUNK_ELEMENTS distances."""
    return max(1, CHUNK_ELEMENTS // max(1, num_ref * batch))


# ----------------------------------------------------------------------------------------
# farthest point sampling
# ----------------------------------------------------------------------------------------

# One cloud at a time, clouds split over threads; SCALAR/SUFFIX are filled per dtype. The
# distance to the last pick is summed over coordinates in order, min-reduced into min_dist,
# and the first index of the largest min_dist is the next pick (padded points start at -1).
_FPS_C_HEADER = '#include <math.h>\n#include <pthread.h>\n#include <stdint.h>\n#include <stdlib.h>\n'
_FPS_C_BODY = r'''
typedef struct {
    const SCALAR *pos; const uint8_t *mask; int64_t *out;
    int64_t first, stop, n, d, s; int failed;
} job_SUFFIX;

static void fps_cloud_SUFFIX(const SCALAR *pos, const uint8_t *mask, int64_t *out, int64_t n,
                             int64_t d, int64_t s, SCALAR *work) {
    SCALAR *coord = work, *dist = work + d * n, *min_dist = dist + n;
    for (int64_t j = 0; j < n; ++j) {
        for (int64_t c = 0; c < d; ++c) coord[c * n + j] = pos[j * d + c];
        min_dist[j] = (mask != NULL && !mask[j]) ? (SCALAR)-1 : (SCALAR)INFINITY;
    }
    int64_t last = 0;
    out[0] = 0;
    for (int64_t t = 1; t < s; ++t) {
        for (int64_t c = 0; c < d; ++c) {
            const SCALAR *x = coord + c * n, centre = coord[c * n + last];
            if (c == 0) {
                for (int64_t j = 0; j < n; ++j) { SCALAR v = x[j] - centre; dist[j] = v * v; }
            } else {
                for (int64_t j = 0; j < n; ++j) { SCALAR v = x[j] - centre; dist[j] = dist[j] + v * v; }
            }
        }
        for (int64_t j = 0; j < n; ++j) min_dist[j] = dist[j] < min_dist[j] ? dist[j] : min_dist[j];
        SCALAR best = min_dist[0];
        last = 0;
        for (int64_t j = 1; j < n; ++j) {
            if (min_dist[j] > best) { best = min_dist[j]; last = j; }
        }
        out[t] = last;
    }
}

static void *worker_SUFFIX(void *arg) {
    job_SUFFIX *job = (job_SUFFIX *)arg;
    SCALAR *work = (SCALAR *)malloc(sizeof(SCALAR) * job->n * (job->d + 2));
    job->failed = work == NULL;
    for (int64_t b = job->first; work != NULL && b < job->stop; ++b)
        fps_cloud_SUFFIX(job->pos + b * job->n * job->d, job->mask ? job->mask + b * job->n : NULL,
                         job->out + b * job->s, job->n, job->d, job->s, work);
    free(work);
    return NULL;
}

/* pos (b, n, d) contiguous, mask (b, n) or NULL, out (b, s); returns 0 on success. */
int fps_SUFFIX(const SCALAR *pos, const uint8_t *mask, int64_t *out, int64_t b, int64_t n,
               int64_t d, int64_t s, int64_t threads) {
    job_SUFFIX jobs[64];
    pthread_t ids[64];
    int started[64] = {0}, failed = 0;
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads > b ? b : threads;
    for (int64_t i = 0; i < threads; ++i) {
        job_SUFFIX job = {pos, mask, out, b * i / threads, b * (i + 1) / threads, n, d, s, 0};
        jobs[i] = job;
    }
    for (int64_t i = 1; i < threads; ++i) started[i] = pthread_create(&ids[i], NULL, worker_SUFFIX, &jobs[i]) == 0;
    for (int64_t i = 0; i < threads; ++i) {
        if (started[i]) pthread_join(ids[i], NULL);
        else worker_SUFFIX(&jobs[i]);
        failed |= jobs[i].failed;
    }
    return failed;
}
'''
_FPS_C = _FPS_C_HEADER + ''.join(_FPS_C_BODY.replace('SCALAR', scalar).replace('SUFFIX', suffix)
                                 for scalar, suffix in (('float', 'f32'), ('double', 'f64')))
_NATIVE_DTYPES = {torch.float32: 'fps_f32', torch.float64: 'fps_f64'}
_backend_state: dict = {}


def _native_fps_library() -> Optional[ctypes.CDLL]:
    """The built FPS library, or None (with one warning naming the reason) when it cannot be had."""
    if 'native' not in _backend_state:
        try:
            lib = load_library('fps', _FPS_C)
            for symbol in _NATIVE_DTYPES.values():
                fn = getattr(lib, symbol)
                fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 5
                fn.restype = ctypes.c_int
        except NativeBuildError as err:
            warnings.warn(f'attn_ops.point_ops: the native farthest point sampling is unavailable ({err}); '
                          f'using the PyTorch loop', RuntimeWarning, stacklevel=3)
            lib = None
        _backend_state['native'] = lib
    return _backend_state['native']


def _triton_fps_module():
    """:mod:`attn_ops.fps_triton`, or None when triton is not importable."""
    if 'triton' not in _backend_state:
        try:
            from . import fps_triton
        except ImportError:
            fps_triton = None
        _backend_state['triton'] = fps_triton
    return _backend_state['triton']


def fps_backend(pos: Tensor) -> str:
    """The backend :func:`farthest_point_sample` uses for ``pos`` with ``backend='auto'``."""
    if pos.dtype in _NATIVE_DTYPES:
        if pos.device.type == 'cpu' and _native_fps_library() is not None:
            return 'native'
        if pos.device.type == 'cuda' and _triton_fps_module() is not None and \
                pos.shape[1] <= _triton_fps_module().MAX_POINTS:
            return 'triton'
    return 'torch'


def _fps_native(pos: Tensor, num_samples: int, mask: Optional[Tensor]) -> Tensor:
    lib = _native_fps_library()
    if lib is None:
        raise RuntimeError('farthest_point_sample(backend="native"): the native kernel could not be '
                           'built; see the warning above, or use backend="auto"')
    if pos.device.type != 'cpu' or pos.dtype not in _NATIVE_DTYPES:
        raise ValueError(f'farthest_point_sample(backend="native") takes float32/float64 CPU points, '
                         f'got {pos.dtype} on {pos.device}')
    b, n, d = pos.shape
    pos = pos.detach().contiguous()
    flags = None if mask is None else mask.contiguous().view(torch.uint8)
    out = torch.empty(b, num_samples, dtype=torch.long)
    status = getattr(lib, _NATIVE_DTYPES[pos.dtype])(
        pos.data_ptr(), None if flags is None else flags.data_ptr(), out.data_ptr(), b, n, d,
        num_samples, torch.get_num_threads())
    if status:
        raise MemoryError(f'farthest_point_sample: the native kernel could not allocate its '
                          f'{(d + 2) * n} scalars of work space')
    return out


def _fps_torch(pos: Tensor, num_samples: int, mask: Optional[Tensor]) -> Tensor:
    b, n, d = pos.shape
    coord = pos.detach().permute(2, 0, 1).contiguous()                 # (D, B, N)
    min_dist = torch.full((b, n), math.inf, dtype=pos.dtype, device=pos.device)
    if mask is not None:
        min_dist.masked_fill_(~mask, -1.0)
    diff, dist = torch.empty_like(coord), torch.empty_like(min_dist)
    best = pos.new_empty(b, 1)
    picks = torch.zeros(num_samples, b, 1, dtype=torch.long, device=pos.device)
    for t in range(1, num_samples):
        centre = coord.gather(2, picks[t - 1].expand(d, b, 1))
        torch.sub(coord, centre, out=diff).square_()
        dist.copy_(diff[0])
        for c in range(1, d):
            dist.add_(diff[c])
        torch.minimum(min_dist, dist, out=min_dist)
        torch.max(min_dist, 1, keepdim=True, out=(best, picks[t]))   # first index on ties
    return picks.view(num_samples, b).t().contiguous()


def farthest_point_sample(pos: Tensor, num_samples: int, mask: Optional[Tensor] = None, *,
                          backend: str = 'auto') -> Tensor:
    r"""Farthest point sampling on dense clouds.

    .. math::
        i_0 = 0,\qquad i_{t+1} = \arg\max_j \min_{s \le t} \|p_j - p_{i_s}\|^2

    (first index on ties).

    Args:
        pos: ``(B, N, D)`` finite coordinates.
        num_samples: number S of points to pick per cloud.
        mask: optional ``(B, N)`` bool, True = real point; padded points are never picked while
            real ones remain, and the first real point must be at index 0 (``to_dense_batch``
            layout). A cloud with fewer than S real points repeats index 0 after exhausting them.
        backend: ``'auto'``, ``'native'``, ``'triton'`` or ``'torch'`` (see the module docstring);
            all return the same indices.

    Returns:
        ``(B, S)`` long indices into N.
    """
    _check_dense('farthest_point_sample', pos, mask)
    if backend not in FPS_BACKENDS:
        raise ValueError(f'farthest_point_sample: backend must be one of {FPS_BACKENDS}, got {backend!r}')
    b, n, _ = pos.shape
    if n == 0 or pos.shape[2] == 0:
        raise ValueError(f'farthest_point_sample got clouds of shape {_shape(pos)}: N and D must be > 0')
    if num_samples < 1:
        raise ValueError(f'farthest_point_sample: num_samples must be >= 1, got {num_samples}')
    if backend == 'auto':
        backend = fps_backend(pos)
    if backend == 'native':
        return _fps_native(pos, num_samples, mask)
    if backend == 'triton':
        module = _triton_fps_module()
        if module is None:
            raise RuntimeError('farthest_point_sample(backend="triton") needs triton; it is not importable')
        return module.farthest_point_sample_triton(pos, num_samples, mask)
    return _fps_torch(pos, num_samples, mask)


# ----------------------------------------------------------------------------------------
# neighbours
# ----------------------------------------------------------------------------------------

def knn(query: Tensor, ref: Tensor, k: int, ref_mask: Optional[Tensor] = None,
        return_dist: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    r"""The k nearest ``ref`` points of every ``query`` point, sorted by distance.

    Queries go in chunks of at most :data:`CHUNK_ELEMENTS` distances.

    Args:
        query: ``(B, M, D)``; ref: ``(B, N, D)``.
        k: neighbours per query. If a cloud has fewer than k real points, the missing slots
            repeat the nearest neighbour.
        ref_mask: optional ``(B, N)`` bool, True = real reference point.
        return_dist: also return the squared distances ``(B, M, k)`` (differentiable).

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
    idx_chunks, found_chunks = [], []
    step = _query_chunk(n, b)
    with torch.no_grad():
        for s in range(0, m, step):
            d = square_distance(query[:, s:s + step], ref)
            if ref_mask is not None:
                d.masked_fill_(~ref_mask.unsqueeze(1), math.inf)
            dist, idx = d.topk(kk, dim=-1, largest=False, sorted=True)
            idx_chunks.append(idx)
            found_chunks.append(torch.isfinite(dist))
    idx = torch.cat(idx_chunks, 1) if idx_chunks else query.new_zeros(b, 0, kk, dtype=torch.long)
    found = torch.cat(found_chunks, 1) if found_chunks else idx.new_zeros(idx.shape, dtype=torch.bool)
    if kk < k:  # fewer points than k: the slots repeat the nearest one
        idx = torch.cat([idx, idx[..., :1].expand(-1, -1, k - kk)], -1)
        found = torch.cat([found, found.new_zeros(b, m, k - kk)], -1)
    idx = torch.where(found, idx, idx[..., :1].expand_as(idx))
    if not return_dist:
        return idx
    return idx, _sq_dist(query.unsqueeze(2), gather_points(ref, idx))


def ball_query(query: Tensor, ref: Tensor, radius: float, k: int,
               ref_mask: Optional[Tensor] = None) -> Tensor:
    r"""PointNet++ ball query: the first k ``ref`` points (in index order) with
    :math:`\|r_j - q_i\|^2 < radius^2`; empty slots repeat the first hit (index 0 if none).

    Queries go in chunks of at most :data:`CHUNK_ELEMENTS` distances.
    Shapes: ``(B, M, D), (B, N, D) -> (B, M, k)`` long.
    """
    _check_dense('ball_query', query, what='query')
    _check_dense('ball_query', ref, ref_mask, what='ref')
    b, m, _ = query.shape
    n = ref.shape[1]
    kk = min(k, n)
    out = []
    step = _query_chunk(n, b)
    order = torch.arange(n, device=ref.device)
    with torch.no_grad():
        for s in range(0, m, step):
            inside = square_distance(query[:, s:s + step], ref) < radius * radius
            if ref_mask is not None:
                inside &= ref_mask.unsqueeze(1)
            # hits keep their index, misses become n; the k smallest are the first k hits
            key = torch.where(inside, order, n).topk(kk, dim=-1, largest=False, sorted=True).values
            if kk < k:
                key = torch.cat([key, key.new_full((*key.shape[:2], k - kk), n)], -1)
            first = key[..., :1].masked_fill(key[..., :1] == n, 0)
            out.append(torch.where(key == n, first, key))
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
# ragged (PyG) forms: densify, run the dense op, map back to indices of the ragged tensor
# ----------------------------------------------------------------------------------------

def _ptr(batch: Tensor, num_clouds: int) -> Tensor:
    """Start offsets ``(num_clouds + 1,)`` of each cloud in a sorted ``batch`` vector."""
    counts = torch.bincount(batch, minlength=num_clouds)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def _batch_or_zeros(x: Tensor, batch: Optional[Tensor]) -> Tensor:
    if batch is None:
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    if batch.dim() != 1 or batch.shape[0] != x.shape[0]:
        raise ValueError(f'batch must be a vector of one cloud id per point, shape ({x.shape[0]},), '
                         f'got {_shape(batch)}')
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError('batch must be sorted (points of each cloud contiguous, as in a PyG Batch)')
    return batch


def to_dense(x: Tensor, batch: Optional[Tensor], num_clouds: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """``(P, C)`` + sorted ``batch`` ``(P,)`` -> ``(B, Nmax, C)`` zero-padded and mask ``(B, Nmax)``.

    The layout of PyG's ``to_dense_batch``: the points of cloud b, in order, at the start of
    row b. ``num_clouds`` counts trailing empty clouds (default ``batch.max() + 1``).
    """
    batch = _batch_or_zeros(x, batch)
    if num_clouds is None:
        num_clouds = int(batch.max()) + 1 if batch.numel() else 1
    ptr = _ptr(batch, num_clouds)
    counts = ptr[1:] - ptr[:-1]
    slot = torch.arange(x.shape[0], device=x.device) - ptr[batch]
    out = x.new_zeros(num_clouds, int(counts.max()) if counts.numel() else 0, *x.shape[1:])
    out[batch, slot] = x
    mask = torch.arange(out.shape[1], device=x.device) < counts.unsqueeze(1)
    return out, mask


def fps(pos: Tensor, batch: Optional[Tensor] = None, ratio: float = 0.5) -> Tensor:
    r"""Farthest point sampling on a ragged batch: :math:`\lceil ratio \cdot n_b \rceil` points of
    every cloud, its first point first, as :func:`farthest_point_sample` on each cloud.

    Returns global indices ``(sum_b S_b,)`` into ``pos`` ``(P, D)``, cloud by cloud.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f'fps: ratio must be in (0, 1], got {ratio}')
    batch = _batch_or_zeros(pos, batch)
    if torch_cluster is not None:
        return torch_cluster.fps(pos, batch, ratio=ratio, random_start=False)
    dense, mask = to_dense(pos, batch)
    counts = mask.sum(1)
    num = torch.ceil(counts.float() * ratio).long()       # float32, as torch_cluster counts
    idx = farthest_point_sample(dense, int(num.max()), mask)
    keep = torch.arange(idx.shape[1], device=pos.device) < num.unsqueeze(1)
    start = counts.cumsum(0) - counts
    return (idx + start.unsqueeze(1))[keep]


def knn_ragged(x: Tensor, y: Tensor, k: int, batch_x: Optional[Tensor] = None,
               batch_y: Optional[Tensor] = None) -> Tensor:
    r"""kNN graph of a ragged batch, within each cloud: for every centre ``y_i``, its k nearest
    points ``x_j`` of the same cloud (fewer when the cloud has fewer than k points).

    Returns a PyG ``edge_index`` ``(2, E)``: ``edge_index[0]`` = source = neighbour j (index into
    ``x``), ``edge_index[1]`` = target = centre i (index into ``y``); messages flow from the
    neighbours to their centre (``flow='source_to_target'``, as ``PointTransformerConv`` reads
    it). Edges come centre by centre, neighbours by increasing distance. With ``x is y`` every
    point is its own nearest neighbour (a self loop).
    """
    batch_x, batch_y = _batch_or_zeros(x, batch_x), _batch_or_zeros(y, batch_y)
    if torch_cluster is not None:
        return torch_cluster.knn(x, y, k, batch_x, batch_y).flip(0)
    num_clouds = max(int(batch_x.max()) + 1 if batch_x.numel() else 1,
                     int(batch_y.max()) + 1 if batch_y.numel() else 1)
    xd, xm = to_dense(x, batch_x, num_clouds)
    yd, ym = to_dense(y, batch_y, num_clouds)
    idx = knn(yd, xd, k, ref_mask=xm)                                   # (B, My, k)
    counts_x = xm.sum(1)
    rank = torch.arange(k, device=x.device)
    valid = ym.unsqueeze(-1) & (rank < counts_x.view(-1, 1, 1))        # true neighbours only
    start_x, start_y = counts_x.cumsum(0) - counts_x, _ptr(batch_y, num_clouds)[:-1]
    source = (idx + start_x.view(-1, 1, 1))[valid]
    target = (torch.arange(idx.shape[1], device=y.device).view(1, -1, 1)
              + start_y.view(-1, 1, 1)).expand_as(idx)[valid]
    return torch.stack([source, target])
