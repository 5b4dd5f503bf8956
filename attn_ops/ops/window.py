"""Windowed attention: every pixel attends to a group of pixels chosen by position.

* Swin's window and shifted-window attention (Liu et al., "Swin Transformer: Hierarchical Vision
  Transformer using Shifted Windows", ICCV 2021, arXiv:2103.14030);
* HaloNet's blocked local attention (Vaswani et al., "Scaling Local Self-Attention for Parameter
  Efficient Visual Backbones", CVPR 2021, arXiv:2103.12731);
* CrossFormer's short- and long-distance attention with its dynamic position bias (Wang et al.,
  "CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention", ICLR 2022,
  arXiv:2108.00154);
* MOA's global attention among overlapped window patches (Patel et al., "Aggregating Global
  Features into Local Vision Transformer", 2022, arXiv:2201.12903).

Every op here works on any H x W: groups are described by a table of pixel indices (``-1`` for a
slot beyond the map), the map is gathered into groups and scattered back, and slots beyond the map
are masked as keys, so they never receive attention. Windows larger than the map make one padded
window. The helpers at the top (group tables, relative position indices, biased attention) are
shared with :mod:`.axial` and :mod:`.deformable`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..layouts import MAP
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import MAP_BUDGET, chunk_spans, float32_math, upcast

NEG_INF = float('-inf')


# ----------------------------------------------------------------------------- shared helpers
def default_heads(name: str, dim: int, num_heads: Optional[int], head_dim: int = 32) -> int:
    """``num_heads``, or the papers' head width of ``head_dim`` channels when it is None
    (``max(dim // 32, 1)``: 3 heads for Swin-T's 96 channels); ``dim`` must divide evenly."""
    heads = max(dim // head_dim, 1) if num_heads is None else num_heads
    if heads < 1 or dim % heads:
        rule = f' (num_heads=None means dim // {head_dim})' if num_heads is None else ''
        raise ValueError(f'{name}: dim={dim} is not divisible by num_heads={heads}{rule}')
    return heads


def attend_biased(q: Tensor, k: Tensor, v: Tensor, bias: Optional[Tensor], dropout_p: float,
                  return_attn: bool = False, scale: Optional[float] = None):
    """``softmax_keys(q k^T * scale + bias) v``: q (..., N, d), k (..., M, d), v (..., M, e); ``bias``
    additive, broadcastable to (..., N, M), ``-inf`` for forbidden keys (every row keeps a key),
    or a bool mask (True = attend).

    SDPA unless ``return_attn``; then the explicit path (softmax in float32) also returns the
    weights (..., N, M) before dropout.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not return_attn:
        mask = bias if bias is None or bias.dtype == torch.bool else bias.to(q.dtype)
        if q.dim() == 4:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        # SDPA's fused CPU kernels take (B, heads, N, d): fold the group axes into the heads
        b, lead = q.shape[0], q.shape[1:-2]
        if mask is not None:
            mask = mask.view((1,) * (q.dim() - mask.dim()) + tuple(mask.shape))
            mask = mask.expand(mask.shape[0], *lead, *mask.shape[-2:]).reshape(mask.shape[0], -1, *mask.shape[-2:])
        out = F.scaled_dot_product_attention(*(t.reshape(b, -1, *t.shape[-2:]) for t in (q, k, v)), attn_mask=mask,
                                             dropout_p=dropout_p, scale=scale)
        return out.view(*q.shape[:-1], v.shape[-1])
    with float32_math(q):
        logits = (upcast(q) * scale) @ upcast(k).transpose(-2, -1)
        if bias is not None:
            logits = (logits.masked_fill(~bias, NEG_INF) if bias.dtype == torch.bool
                      else logits + upcast(bias))
        weights = logits.softmax(dim=-1)
    weights = weights.to(v.dtype)
    return F.dropout(weights, dropout_p) @ v, weights


def pixel_grid(h: int, w: int, pad_h: int = 0, pad_w: int = 0, device=None) -> Tensor:
    """(h + pad_h, w + pad_w) long: the row-major pixel index, ``-1`` in the padding (bottom, right)."""
    grid = torch.arange(h * w, device=device).view(h, w)
    return F.pad(grid, (0, pad_w, 0, pad_h), value=-1)


def window_index(h: int, w: int, size: Sequence[int], shift: Sequence[int] = (0, 0), device=None) -> Tensor:
    """(G, T) pixel indices of the ``size`` windows of an h x w map padded (bottom, right) to a
    multiple of the window and cyclically shifted up and left by ``shift``; ``-1`` = padding."""
    wh, ww = size
    hp, wp = math.ceil(h / wh) * wh, math.ceil(w / ww) * ww
    grid = pixel_grid(h, w, hp - h, wp - w, device)
    if shift[0] or shift[1]:
        grid = grid.roll((-shift[0], -shift[1]), dims=(0, 1))
    return partition(grid, wh, ww)


def partition(grid: Tensor, wh: int, ww: int) -> Tensor:
    """(Hp, Wp) -> (Hp/wh * Wp/ww, wh * ww): non-overlapping windows, row-major both ways."""
    hp, wp = grid.shape
    return grid.view(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)


def group_tokens(x: Tensor, index: Tensor) -> Tensor:
    """A map (B, C, H, W) gathered into groups: (B, G, T, C) for ``index`` (G, T), zeros at ``-1``."""
    tokens = F.pad(x.flatten(2), (0, 1)).transpose(1, 2)        # (B, N + 1, C), the last row zero
    return tokens[:, index]


def ungroup_tokens(y: Tensor, index: Tensor, hw: Sequence[int]) -> Tensor:
    """The inverse of :func:`group_tokens` for an ``index`` holding every pixel exactly once:
    (B, G, T, C) -> (B, C, H, W); slots at ``-1`` are dropped."""
    h, w = hw
    flat = index.flatten()
    slots = torch.nonzero(flat >= 0).squeeze(1)
    order = torch.empty(h * w, dtype=torch.long, device=index.device)
    order[flat[slots]] = slots
    out = y.flatten(1, 2)[:, order]                              # (B, N, C)
    return out.transpose(1, 2).reshape(y.shape[0], -1, h, w)


def key_mask(index: Tensor) -> Tensor:
    """(G, T, T) bool: key j is a pixel of the map (or j is the query itself, so a padded slot's
    row is never empty; padded rows are dropped afterwards)."""
    t = index.shape[1]
    return (index >= 0)[:, None, :] | torch.eye(t, dtype=torch.bool, device=index.device)


def scatter_dense(weights: Tensor, query_index: Tensor, key_index: Tensor, n: int) -> Tensor:
    """Group weights (B, h, G, T, S) -> (B, h, N, N), where ``query_index`` (G, T) and
    ``key_index`` (G, S) name the pixels; slots at ``-1`` are dropped, repeated pairs summed."""
    g, t = query_index.shape
    s = key_index.shape[1]
    tgt = query_index[:, :, None].expand(g, t, s)
    src = key_index[:, None, :].expand(g, t, s)
    valid = (tgt >= 0) & (src >= 0)
    dense = weights.new_zeros(*weights.shape[:2], n * n)
    dense.index_add_(2, (tgt * n + src)[valid], weights[..., valid])
    return dense.view(*weights.shape[:2], n, n)


def relative_position_index(h: int, w: int, device=None) -> Tensor:
    """(h w, h w) long: Swin's index of the offset between positions i (query) and j (key) of an
    h x w grid in a (2h - 1) x (2w - 1) table, ``(y_i - y_j + h - 1)(2w - 1) + x_i - x_j + w - 1``."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :] + h - 1) * (2 * w - 1) + (xs[:, None] - xs[None, :] + w - 1)


def relative_bias(table: Tensor, h: int, w: int) -> Tensor:
    """(heads, N, N) with entry (i, j) = ``table[:, y_i - y_j + h - 1, x_i - x_j + w - 1]`` for a table
    (heads, 2h - 1, 2w - 1) (Swin's indexing, read as sliding windows of the flipped table: one copy)."""
    windows = table.flip(-2, -1).unfold(-2, h, 1).unfold(-2, w, 1)                 # (heads, h, w, h, w)
    return windows.flip(-4, -3).reshape(table.shape[0], h * w, h * w)


def resize_relative_table(table: Tensor, h: int, w: int) -> Tensor:
    """A relative table (heads, 2a - 1, 2b - 1) made for an a x b grid, for an h x w grid:
    (heads, 2h - 1, 2w - 1). Offsets are scaled with the grid (offset dy on h rows reads the table
    at dy (a - 1) / (h - 1)) and read bilinearly; the table itself when the sizes agree."""
    if table.shape[-2:] == (2 * h - 1, 2 * w - 1):
        return table
    with float32_math(table):
        src = upcast(table)
        ys = torch.arange(1 - h, h, device=table.device, dtype=src.dtype) / max(h - 1, 1)
        xs = torch.arange(1 - w, w, device=table.device, dtype=src.dtype) / max(w - 1, 1)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=-1)    # (2h-1, 2w-1, (x, y))
        out = F.grid_sample(src[None], grid[None], mode='bilinear', align_corners=True)[0]
    return out.to(table.dtype)


# ----------------------------------------------------------------------------- Swin
@ATTENTION.register_module()
class WindowAttention(AttentionOp):
    r"""Window multi-head self-attention with relative position bias, plain (W-MSA) or shifted
    (SW-MSA) (Swin, Eq. 4 and Sec. 3.2).

    The map is cut into M x M windows (for ``shift`` > 0 after a cyclic shift of ``shift`` pixels
    up and left, Swin's masks keeping apart the pixels the shift brought together); each pixel
    attends to the pixels of its window:

    .. math::
        Y = \mathrm{softmax}_{\text{keys of the window}}\big(Q K^\top / \sqrt{d} + B\big)\, V,\qquad
        B_{ij} = \hat B\big[(y_i - y_j + M - 1)(2M - 1) + (x_i - x_j + M - 1)\big]

    with one learnable table :math:`\hat B` ((2M - 1)^2, heads) of relative position biases,
    softmax over the keys of the window, ``Q, K, V`` one linear layer, an output projection.

    Args:
        dim: channels C. num_heads: heads (None: Swin's head width of 32 channels, dim // 32).
        window_size: M (Swin: 7). shift: 0 (W-MSA) or, as Swin's second block, M // 2 (SW-MSA);
            0 <= shift < M. qkv_bias: bias of the qkv projection (Swin: True).
        attn_drop, proj_drop: dropout rates.

    Any H x W: the map is padded (bottom, right) to a multiple of M and the padded pixels are
    masked as keys (Swin attends to its zero padding; ours never does); a map no larger than M
    along an axis is not shifted along it (Swin's rule: nothing to shift). Initialisation: the bias
    table ~ trunc_normal(std=0.02) as Swin; linear layers PyTorch's default. Parameter names are
    Swin's (``qkv``, ``proj``, ``relative_position_bias_table``), so its checkpoints load.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the weights
    (B, heads, G, M^2, M^2) before dropout (``local`` form: G windows of the padded, shifted map,
    [query, key] slots row-major in the window; rows sum to one over the keys; slots beyond the map
    get zero weight from the map's pixels, and their own rows, which attend to themselves, are
    dropped); :meth:`dense_attention` scatters them to (B, heads, N, N). Cost O(N M^2 C).

    Catalogue: equal (DAT's ``LocalAttention`` for shift = 0 and ``ShiftWindowAttention`` for
    shift > 0, which need H and W divisible by M and fix the map size at construction)
    """

    layout = MAP
    attn_form = 'local'
    paper = 'Swin (Liu et al., ICCV 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_heads: Optional[int] = None, window_size: int = 7, shift: int = 0, *,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if window_size < 1 or not 0 <= shift < window_size:
            raise ValueError(f'WindowAttention: expected window_size >= 1 and 0 <= shift < window_size, '
                             f'got window_size={window_size}, shift={shift}')
        self.dim, self.window_size, self.shift, self.attn_drop = dim, window_size, shift, attn_drop
        self.num_heads = default_heads('WindowAttention', dim, num_heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, self.num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer('relative_position_index', relative_position_index(window_size, window_size))

    def _shift(self, h: int, w: int) -> tuple[int, int]:
        m = self.window_size
        return (self.shift if h > m else 0, self.shift if w > m else 0)

    def _windows(self, h: int, w: int, device) -> tuple[Tensor, Tensor]:
        """(G, T) pixel indices of the windows and (G, T, T) bool: which keys each query may see."""
        m = self.window_size
        shift = self._shift(h, w)
        index = window_index(h, w, (m, m), shift, device)
        hp, wp = math.ceil(h / m) * m, math.ceil(w / m) * m

        def labels(size: int, s: int) -> Tensor:   # Swin's slices (0, -M), (-M, -s), (-s, None)
            pos = torch.arange(size, device=device)
            return (pos >= size - m).long() + (pos >= size - s).long() if s else torch.zeros_like(pos)

        region = partition(labels(hp, shift[0])[:, None] * 3 + labels(wp, shift[1])[None, :], m, m)
        return index, key_mask(index) & (region[:, :, None] == region[:, None, :])

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        heads = self.num_heads
        index, allowed = self._windows(h, w, x.device)
        t = index.shape[1]
        qkv = self.qkv(group_tokens(x, index))                                   # (B, G, T, 3C)
        q, k, v = qkv.unflatten(-1, (3, heads, c // heads)).permute(3, 0, 4, 1, 2, 5)  # (B, h, G, T, d)
        table = self.relative_position_bias_table[self.relative_position_index.flatten()]
        bias = table.view(t, t, heads).permute(2, 0, 1)[:, None]                 # (h, 1, T, T)
        bias = bias.masked_fill(~allowed, NEG_INF)                                # (h, G, T, T)
        out = attend_biased(q, k, v, bias, self.attn_drop if self.training else 0.0, return_attn)
        out, weights = out if return_attn else (out, None)
        out = self.proj_drop(self.proj(out.permute(0, 2, 3, 1, 4).flatten(-2)))    # (B, G, T, C)
        y = ungroup_tokens(out, index, (h, w))
        return (y, weights) if return_attn else y

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, heads, G, M^2, M^2) window weights -> (B, heads, N, N): the weight of pixel s's value
        in pixel t's (pre-projection) output."""
        h, w = int(hw[0]), int(hw[1])
        index, _ = self._windows(h, w, weights.device)
        return scatter_dense(weights, index, index, h * w)


# ----------------------------------------------------------------------------- HaloNet
def halo_index(h: int, w: int, block: int, halo: int, device=None) -> Tensor:
    """(G, (block + 2 halo)^2) pixel indices of each block's haloed window, ``-1`` beyond the map;
    blocks in the order of :func:`window_index`."""
    win = block + 2 * halo
    hp, wp = math.ceil(h / block) * block, math.ceil(w / block) * block
    grid = F.pad(pixel_grid(h, w, hp - h, wp - w, device), (halo, halo, halo, halo), value=-1)
    return grid.unfold(0, win, block).unfold(1, win, block).reshape(-1, win * win)


@ATTENTION.register_module()
class HaloAttention(AttentionOp):
    r"""Blocked local self-attention with halos and relative logits (HaloNet, Sec. 2).

    The map is cut into b x b blocks; the queries of a block attend to the (b + 2h) x (b + 2h)
    window around it (the block and a halo of h pixels), with separable relative logits:

    .. math::
        y_{ij} = \sum_{ab \in \mathcal{N}(ij)} \mathrm{softmax}_{ab \in \mathcal{N}(ij)}\big(
        \hat q_{ij}^\top k_{ab} + \hat q_{ij}^\top r^{H}_{a - i} + \hat q_{ij}^\top r^{W}_{b - j}\big)\, v_{ab},
        \qquad \hat q = q / \sqrt{d}

    softmax over the window :math:`\mathcal{N}(ij)` of the query's block (keys beyond the map are
    masked), :math:`r^H, r^W` learnable row and column embeddings (2(b + h) - 1, d) shared by the
    heads, ``q``, ``k``, ``v`` linear layers without bias, an output projection.

    Args:
        dim: channels C (divisible by ``num_heads``). num_heads: heads (8, as the catalogue and timm).
        block_size: b (HaloNet: 8). halo_size: h (HaloNet: 3). attn_drop, proj_drop: dropout rates.

    Any H x W: the map is padded to a multiple of b; padded pixels and the halo beyond the map are
    masked as keys. Initialisation: relative embeddings ~ N(0, 1/d); linear layers PyTorch's default.
    The fused path folds the relative logits into SDPA (queries carry their row and column logits,
    keys a one-hot of their row and column), so no b^2 x (b + 2h)^2 logits or weights are kept for
    the backward pass, at the price of 2(b + 2h) more channels in the q.k and a.v products (counted
    in the op table's FLOPs): less activation memory than the explicit form, more time on CPU.
    Where the widened keys and values of all windows would exceed ``MAP_BUDGET`` elements
    (C = 64, B = 1: from a 256 x 256 map on) the blocks go in chunks recomputed in backward, so what
    is kept grows by O(C) per pixel and a 1024 x 1024 map fits in memory.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the weights
    (B, heads, G, b^2, (b + 2h)^2) before dropout (``local`` form: G blocks, [query in the block,
    key in the window] row-major; rows sum to one, keys beyond the map get zero weight);
    :meth:`dense_attention` scatters them to (B, heads, N, N). Cost O(N (b + 2h)^2 C).

    Catalogue: differs: it masks the wrong keys (its mask is True at the map's pixels and is used
    as the fill mask), so interior blocks attend uniformly over their window whatever the queries,
    and border blocks attend to the zero padding only; we mask the padding (equal to the catalogue
    with its mask inverted; its relative tables also hold 2h rows that are never read)
    """

    layout = MAP
    attn_form = 'local'
    paper = 'HaloNets (Vaswani et al., CVPR 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_heads: int = 8, block_size: int = 8, halo_size: int = 3, *,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'HaloAttention: dim={dim} is not divisible by num_heads={num_heads}')
        if block_size < 1 or halo_size < 0:
            raise ValueError(f'HaloAttention: expected block_size >= 1 and halo_size >= 0, '
                             f'got block_size={block_size}, halo_size={halo_size}')
        self.dim, self.num_heads, self.attn_drop = dim, num_heads, attn_drop
        self.block_size, self.halo_size = block_size, halo_size
        d = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        span = 2 * (block_size + halo_size) - 1
        self.rel_height = nn.Parameter(torch.randn(span, d) * d ** -0.5)
        self.rel_width = nn.Parameter(torch.randn(span, d) * d ** -0.5)

    def _relative_logits(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Row and column logits of scaled queries (..., b^2, d): (..., b^2, b + 2h) each, entry
        [t, a] for window row (column) a of query t."""
        b, win = self.block_size, self.block_size + 2 * self.halo_size
        pos = torch.arange(b * b, device=q.device)
        keys = torch.arange(win, device=q.device)
        rows = (keys[None, :] - (pos // b)[:, None] + b - 1)        # a - (i + h) + (b + h - 1)
        cols = (keys[None, :] - (pos % b)[:, None] + b - 1)
        lh = (q @ self.rel_height.transpose(0, 1)).gather(-1, rows.expand(*q.shape[:-1], win))
        lw = (q @ self.rel_width.transpose(0, 1)).gather(-1, cols.expand(*q.shape[:-1], win))
        return lh, lw

    def _attend(self, q_tokens: Tensor, kv_tokens: Tensor, q_index: Tensor, k_index: Tensor,
                return_attn: bool = False):
        """Attention of the blocks ``q_index`` (G, T) over their windows ``k_index`` (G, S), from the
        projected tokens (B, N + 1, C) and (B, N + 1, 2C) (last row zero): (B, heads, G, T, d)
        (and the weights with ``return_attn``)."""
        heads, win = self.num_heads, self.block_size + 2 * self.halo_size
        d = q_tokens.shape[-1] // heads
        q = q_tokens[:, q_index].unflatten(-1, (heads, d)).permute(0, 3, 1, 2, 4) * d ** -0.5
        k, v = kv_tokens[:, k_index].unflatten(-1, (2, heads, d)).permute(3, 0, 4, 1, 2, 5)
        lh, lw = self._relative_logits(q)                                          # (B, h, G, T, win)
        valid = (k_index >= 0)[:, None, :]                                         # (G, 1, S)
        drop = self.attn_drop if self.training else 0.0
        if return_attn:
            rel = (lh[..., :, None] + lw[..., None, :]).flatten(-2)               # (B, h, G, T, S)
            return attend_biased(q, k, v, rel.masked_fill(~valid, NEG_INF), drop, True, scale=1.0)
        # q . k + lh[row(k)] + lw[col(k)] as one dot product of widened queries and keys
        eye = torch.eye(win, dtype=q.dtype, device=q.device)
        onehot = torch.cat([eye.repeat_interleave(win, 0), eye.repeat(win, 1)], dim=-1)   # (S, 2 win)
        q = torch.cat([q, lh.to(q.dtype), lw.to(q.dtype)], dim=-1)
        k = torch.cat([k, onehot.to(k.dtype).expand(*k.shape[:-1], 2 * win)], dim=-1)
        v = F.pad(v, (0, 2 * win))           # SDPA's fused kernels want one width for q, k and v
        return attend_biased(q, k, v, valid, drop, False, scale=1.0)[..., :d]

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        q_index = window_index(h, w, (self.block_size, self.block_size), device=x.device)
        k_index = halo_index(h, w, self.block_size, self.halo_size, x.device)
        tokens = F.pad(x.flatten(2), (0, 1)).transpose(1, 2)                      # (B, N + 1, C), last row 0
        q_tokens, kv_tokens = self.q(tokens), self.kv(tokens)
        if return_attn:
            out, weights = self._attend(q_tokens, kv_tokens, q_index, k_index, True)
        else:
            # The widened keys and values of all windows, (B, G, S, 2 (C + 2 heads win)), can outgrow
            # memory on large maps (14 GiB for 1024 x 1024 at C = 64): above MAP_BUDGET elements the
            # blocks go in chunks whose windows are recomputed in backward (same result, more time).
            per_block = b * k_index.shape[1] * 2 * (c + 2 * self.num_heads * (self.block_size + 2 * self.halo_size))
            chunk = max(1, MAP_BUDGET // per_block)
            if chunk >= q_index.shape[0]:
                out = self._attend(q_tokens, kv_tokens, q_index, k_index)
            else:
                out = torch.cat([checkpoint(self._attend, q_tokens, kv_tokens, q_index[sl], k_index[sl],
                                            use_reentrant=False)
                                 for sl in chunk_spans(q_index.shape[0], chunk)], dim=2)
        out = self.proj_drop(self.proj(out.permute(0, 2, 3, 1, 4).flatten(-2)))    # (B, G, T, C)
        y = ungroup_tokens(out, q_index, (h, w))
        return (y, weights) if return_attn else y

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, heads, G, b^2, (b + 2h)^2) block weights -> (B, heads, N, N)."""
        h, w = int(hw[0]), int(hw[1])
        q_index = window_index(h, w, (self.block_size, self.block_size), device=weights.device)
        k_index = halo_index(h, w, self.block_size, self.halo_size, weights.device)
        return scatter_dense(weights, q_index, k_index, h * w)


# ----------------------------------------------------------------------------- CrossFormer
class DynamicPosBias(nn.Module):
    """CrossFormer's DPB: an MLP from a relative offset (dy, dx) to one bias per head,
    ``Linear(2, D) -> [LN -> ReLU -> Linear] x 3`` (the last to ``heads``), D the hidden width."""

    def __init__(self, hidden: int, num_heads: int):
        super().__init__()
        self.pos_proj = nn.Linear(2, hidden)
        self.pos1 = nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.pos2 = nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.pos3 = nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, num_heads))

    def forward(self, offsets: Tensor) -> Tensor:
        """(M, 2) offsets -> (M, heads) biases."""
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


@ATTENTION.register_module()
class CrossFormerAttention(AttentionOp):
    r"""Short- or long-distance attention (SDA / LDA) with dynamic position bias (CrossFormer,
    Sec. 3.2-3.3).

    The pixels are split into groups and self-attention runs within each group. SDA: G x G blocks
    of adjacent pixels. LDA: the pixels sampled at a fixed interval I (group (a, b) holds the pixels
    (a + I i, b + I j)), so a group spans the whole map. Every pair gets a bias from the DPB, an
    MLP of the pair's offset in group coordinates:

    .. math::
        Y = \mathrm{softmax}_{\text{keys of the group}}\big(Q K^\top / \sqrt{d} + B\big) V,\qquad
        B_{ij} = \mathrm{DPB}(y_i - y_j,\ x_i - x_j)

    softmax over the keys of the group; DPB ``Linear(2, D/4) -> [LN -> ReLU -> Linear] x 3``
    (hidden width D/4 as the paper, last layer to one bias per head).

    Args:
        dim: channels C. num_heads: heads (None: dim // 32, CrossFormer-T's 2 heads at 64 channels).
        group_size: G of SDA (paper: 7). interval: I of LDA (paper: 8 in stage 1).
        lsda: ``'sda'`` (short distance) or ``'lda'`` (long distance); CrossFormer alternates them.
        qkv_bias: bias of the qkv projection (True). attn_drop, proj_drop: dropout rates.

    Any H x W: SDA pads to a multiple of G, LDA to a multiple of I (a group then holds
    ceil(H / I) x ceil(W / I) pixels); padded pixels are masked as keys. A map with min(H, W) <= G
    forms one group of all its pixels, for SDA and LDA (the official backbone's rule, as
    CrossFormer++ keeps it). Initialisation: PyTorch's default for every layer.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the weights
    (B, heads, n_groups, T, T) before dropout (``local`` form: T slots per group, row-major in
    group coordinates; rows sum to one; slots beyond the map get zero weight from the map's pixels,
    their own rows are dropped); :meth:`dense_attention`
    scatters them to (B, heads, N, N). Cost O(N G^2 C) for SDA, O(N^2 C / I^2) for LDA.

    Catalogue: differs: its DPB hidden width is dim // 16 (``DynamicPosBias(dim // 4)`` divides by
    4 again, as the official code does) instead of the paper's D/4, so below 16 channels the width
    is 0 and every offset gets the same bias: no position information; we follow the paper (equal
    to the catalogue with its DPB built at width dim // 4; its LDA takes the interval as H / G)
    """

    layout = MAP
    attn_form = 'local'
    paper = 'CrossFormer (Wang et al., ICLR 2022)'
    complexity = 'O(N) SDA, O(N^2) LDA'

    def __init__(self, dim: int, num_heads: Optional[int] = None, group_size: int = 7, interval: int = 8,
                 lsda: str = 'sda', *, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if lsda not in ('sda', 'lda'):
            raise ValueError(f"CrossFormerAttention: lsda must be 'sda' or 'lda', got {lsda!r}")
        if group_size < 1 or interval < 1:
            raise ValueError(f'CrossFormerAttention: expected group_size >= 1 and interval >= 1, '
                             f'got group_size={group_size}, interval={interval}')
        if dim < 4:
            raise ValueError(f'CrossFormerAttention: dim must be >= 4 (the DPB width is dim // 4), got {dim}')
        self.dim, self.group_size, self.interval, self.lsda, self.attn_drop = dim, group_size, interval, lsda, attn_drop
        self.num_heads = default_heads('CrossFormerAttention', dim, num_heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.pos = DynamicPosBias(dim // 4, self.num_heads)

    def groups(self, h: int, w: int, device=None) -> tuple[Tensor, tuple[int, int]]:
        """(n_groups, T) pixel indices of the groups (``-1`` = padding) and the group's (rows, cols)."""
        g, i = self.group_size, self.interval
        if min(h, w) <= g:
            return torch.arange(h * w, device=device)[None], (h, w)
        if self.lsda == 'sda':
            return window_index(h, w, (g, g), device=device), (g, g)
        hp, wp = math.ceil(h / i) * i, math.ceil(w / i) * i
        gh, gw = hp // i, wp // i
        grid = pixel_grid(h, w, hp - h, wp - w, device)
        return grid.view(gh, i, gw, i).permute(1, 3, 0, 2).reshape(i * i, gh * gw), (gh, gw)

    def position_bias(self, gh: int, gw: int, dtype: torch.dtype, device=None) -> Tensor:
        """(heads, T, T): the DPB of every pair of a gh x gw group."""
        ys = torch.arange(1 - gh, gh, device=device, dtype=dtype)
        xs = torch.arange(1 - gw, gw, device=device, dtype=dtype)
        offsets = torch.stack(torch.meshgrid(ys, xs, indexing='ij'), dim=-1)       # (2gh-1, 2gw-1, 2)
        return relative_bias(self.pos(offsets).permute(2, 0, 1), gh, gw)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        heads = self.num_heads
        index, (gh, gw) = self.groups(h, w, x.device)
        qkv = self.qkv(group_tokens(x, index))
        q, k, v = qkv.unflatten(-1, (3, heads, c // heads)).permute(3, 0, 4, 1, 2, 5)  # (B, h, G, T, d)
        bias = self.position_bias(gh, gw, self.pos.pos_proj.weight.dtype, x.device)[:, None]
        bias = bias.masked_fill(~key_mask(index), NEG_INF)                         # (h, G, T, T)
        out = attend_biased(q, k, v, bias, self.attn_drop if self.training else 0.0, return_attn)
        out, weights = out if return_attn else (out, None)
        out = self.proj_drop(self.proj(out.permute(0, 2, 3, 1, 4).flatten(-2)))
        y = ungroup_tokens(out, index, (h, w))
        return (y, weights) if return_attn else y

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, heads, n_groups, T, T) group weights -> (B, heads, N, N)."""
        h, w = int(hw[0]), int(hw[1])
        index, _ = self.groups(h, w, weights.device)
        return scatter_dense(weights, index, index, h * w)


# ----------------------------------------------------------------------------- MOA
@ATTENTION.register_module()
class MOAGlobalAttention(AttentionOp):
    r"""Multi-resolution overlapped attention: global attention among window patches (MOA, Sec. 3).

    The channels are reduced by a 1x1 convolution (C / ``reduction``); each w x w window becomes a
    query token (its pixels flattened, a linear layer to C channels) and the (w + 2) x (w + 2)
    patch around it, overlapping its neighbours by one pixel, a key and value token; the window
    tokens attend to each other with a relative position bias over the window grid, and each
    window's result is given to all its pixels:

    .. math::
        Y_p = \Big[\mathrm{softmax}_{\text{windows}}\big(Q K^\top / \sqrt{d} + B\big) V\Big]_{\mathrm{win}(p)},
        \qquad Q = \mathrm{vec}_{w\times w}(X') W_q,\ [K, V] = \mathrm{vec}_{(w+2)\times(w+2)}(X') W_{kv}

    softmax over the n_h n_w windows, :math:`X'` the reduced map, ``B`` from a learnable table
    (heads, 2g - 1, 2g - 1) over window offsets.

    Args:
        dim: channels C. num_heads: heads (None: dim // 32 as MOA's Swin-style stages).
        window_size: w (MOA: 14). reduction: channel reduction of the patches (MOA: 32; at least one
            channel is kept). grid_size: the window grid g x g the bias table is made for (MOA's
            stage 1 at 224 px: 56 / 14 = 4); other grids read it with offsets scaled and bilinear
            interpolation. qkv_bias (True), attn_drop, proj_drop: as Swin.

    Any H x W: the map is padded to a multiple of w; pixels beyond the map enter the patch vectors
    as zeros (as the key patches' own one-pixel padding), every window is a real token.
    Initialisation: bias table ~ trunc_normal(std=0.02) (the official code leaves it at 0).

    Shapes: (B, C, H, W) -> (B, C, H, W), constant over each window. ``return_attn=True`` also
    returns the window weights (B, heads, n_windows, n_windows) before dropout (``local`` form: rows
    sum to one over the windows); :meth:`dense_attention` gives (B, heads, N, N) with a window's
    weight shared equally by its pixels. Cost O(N C / reduction + (N / w^2)^2 C).

    Catalogue: differs: it reads its (B, L, C) tokens as a map with ``reshape`` (no transpose), it
    builds the query and key patch vectors with ``view`` where a transpose is needed (each patch
    token mixes pixels of different windows), its key unfold has stride 14 whatever the window
    (other windows fail to reshape), and below 32 channels it reduces to 0 channels; we follow the
    paper (equal to the catalogue with those fixed)
    """

    layout = MAP
    attn_form = 'local'
    paper = 'MOA (Patel et al., 2022)'
    complexity = 'O(N + N^2 / w^4)'

    def __init__(self, dim: int, num_heads: Optional[int] = None, window_size: int = 14, reduction: int = 32,
                 grid_size: int = 4, *, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if window_size < 1 or reduction < 1 or grid_size < 1:
            raise ValueError(f'MOAGlobalAttention: expected window_size, reduction and grid_size >= 1, got '
                             f'window_size={window_size}, reduction={reduction}, grid_size={grid_size}')
        self.dim, self.window_size, self.reduction, self.grid_size = dim, window_size, reduction, grid_size
        self.num_heads = default_heads('MOAGlobalAttention', dim, num_heads)
        self.attn_drop = attn_drop
        reduced, key_size = max(dim // reduction, 1), window_size + 2
        self.pre_conv = nn.Conv2d(dim, reduced, 1)
        self.q = nn.Linear(reduced * window_size ** 2, dim, bias=qkv_bias)
        self.kv = nn.Linear(reduced * key_size ** 2, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(self.num_heads, 2 * grid_size - 1,
                                                                     2 * grid_size - 1))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _grid(self, h: int, w: int) -> tuple[int, int]:
        return math.ceil(h / self.window_size), math.ceil(w / self.window_size)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        m, heads = self.window_size, self.num_heads
        nh, nw = self._grid(h, w)
        z = F.pad(self.pre_conv(x), (0, nw * m - w, 0, nh * m - h))               # (B, r, Hp, Wp)
        r = z.shape[1]
        queries = z.view(b, r, nh, m, nw, m).permute(0, 2, 4, 3, 5, 1).reshape(b, nh * nw, m * m * r)
        keys = F.unfold(z, m + 2, padding=1, stride=m).transpose(1, 2)           # (B, n, r (w+2)^2)
        q = self.q(queries).unflatten(-1, (heads, c // heads)).transpose(1, 2)    # (B, h, n, d)
        k, v = self.kv(keys).unflatten(-1, (2, heads, c // heads)).permute(2, 0, 3, 1, 4)
        bias = relative_bias(resize_relative_table(self.relative_position_bias_table, nh, nw), nh, nw)
        out = attend_biased(q, k, v, bias, self.attn_drop if self.training else 0.0, return_attn)
        out, weights = out if return_attn else (out, None)
        out = self.proj_drop(self.proj(out.transpose(1, 2).flatten(-2)))           # (B, n, C)
        y = out.transpose(1, 2).reshape(b, c, nh, 1, nw, 1).expand(b, c, nh, m, nw, m)
        y = y.reshape(b, c, nh * m, nw * m)[:, :, :h, :w]
        return (y, weights) if return_attn else y

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, heads, n, n) window weights -> (B, heads, N, N): entry (t, s) is the weight of the
        window holding s in the window holding t, divided by the number of pixels of s's window."""
        h, w = int(hw[0]), int(hw[1])
        m = self.window_size
        nh, nw = self._grid(h, w)
        rows = torch.arange(h, device=weights.device) // m
        cols = torch.arange(w, device=weights.device) // m
        win = (rows[:, None] * nw + cols[None, :]).flatten()                      # (N,) window of each pixel
        count = torch.bincount(win, minlength=nh * nw).to(weights.dtype)
        return weights[:, :, win][:, :, :, win] / count[win]
