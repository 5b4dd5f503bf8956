"""Axial and relative attention on maps.

* Axial attention: self-attention along the columns, then along the rows (Ho et al., "Axial
  Attention in Multidimensional Transformers", 2019, arXiv:1912.12180), with Axial-DeepLab's
  position-sensitive terms (Wang et al., "Axial-DeepLab: Stand-Alone Axial-Attention for Panoptic
  Segmentation", ECCV 2020, arXiv:2003.07853);
* CoAtNet's relative attention: global self-attention plus a learnable bias that depends only on
  the offset between two pixels, so it is translation-equivariant (Dai et al., "CoAtNet: Marrying
  Convolution and Attention for All Data Sizes", NeurIPS 2021, arXiv:2106.04803).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..layouts import MAP, map_to_tokens, tokens_to_map
from ..registry import ATTENTION
from .base import AttentionOp
from .dot_product import merge_heads, split_heads
from .layers import float32_math, upcast
from .window import NEG_INF, attend_biased, default_heads, relative_bias, resize_relative_table


class AxialPass(nn.Module):
    """Multi-head self-attention along one axis of sequences (B', L, C), optionally with
    Axial-DeepLab's position-sensitive terms over offsets within the span (see
    :class:`AxialAttention`). Returns (B', L, C) and, with ``return_attn``, (B', heads, L, L)."""

    def __init__(self, dim: int, num_heads: int, span: int, positional: bool, qkv_bias: bool, proj_drop: float):
        super().__init__()
        self.num_heads, self.radius, self.positional = num_heads, span // 2, positional
        d = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if positional:
            self.rel_q = nn.Parameter(torch.randn(span, d) * d ** -0.5)
            self.rel_k = nn.Parameter(torch.randn(span, d) * d ** -0.5)
            self.rel_v = nn.Parameter(torch.randn(span, d) * d ** -0.5)

    def forward(self, x: Tensor, dropout_p: float, return_attn: bool):
        length = x.shape[1]
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))  # (B', h, L, d)
        pos = torch.arange(length, device=x.device)
        offset = pos[None, :] - pos[:, None]                                   # [o, p] = p - o
        inside = offset.abs() <= self.radius
        bias = None if bool(inside.all()) else inside
        if not self.positional:
            out = attend_biased(q, k, v, bias, dropout_p, return_attn)
        else:   # the L x L position terms are as large as the weights: the explicit path
            idx = offset.clamp(-self.radius, self.radius) + self.radius
            rq, rk, rv = self.rel_q[idx], self.rel_k[idx], self.rel_v[idx]     # (L, L, d)
            with float32_math(x):
                q32, k32 = upcast(q), upcast(k)
                logits = (q32 @ k32.transpose(-2, -1) + torch.einsum('bhod,opd->bhop', q32, upcast(rq))
                          + torch.einsum('bhpd,opd->bhop', k32, upcast(rk))) * q.shape[-1] ** -0.5
                if bias is not None:
                    logits = logits.masked_fill(~bias, NEG_INF)
                weights = logits.softmax(dim=-1)
            weights = weights.to(v.dtype)
            dropped = nn.functional.dropout(weights, dropout_p)
            out = dropped @ v + torch.einsum('bhop,opd->bhod', dropped, rv.to(v.dtype))
            out = (out, weights) if return_attn else out
        out, weights = out if return_attn else (out, None)
        y = self.proj_drop(self.proj(merge_heads(out)))
        return (y, weights) if return_attn else y


@ATTENTION.register_module()
class AxialAttention(AttentionOp):
    r"""Axial attention: multi-head self-attention along each column, then along each row (Ho et
    al.; Axial-DeepLab, Eq. 4), position-sensitive by default.

    Along one axis, position o of a column (row) attends to the positions p of the same column
    (row) within the span:

    .. math::
        y_o = \sum_{p\in\mathcal{N}_m(o)} \mathrm{softmax}_{p\in\mathcal{N}_m(o)}\Big(
        \frac{q_o^\top k_p + q_o^\top r^q_{p-o} + k_p^\top r^k_{p-o}}{\sqrt{d}}\Big)\big(v_p + r^v_{p-o}\big)

    softmax over the positions :math:`\mathcal{N}_m(o)` of the axis with :math:`|p - o| \le (m-1)/2`;
    :math:`r^q, r^k, r^v` learnable relative embeddings (m, d) shared by the heads; each axis has its
    own q/k/v (no bias, as Axial-DeepLab) and output projections. ``positional=False`` drops the
    r terms (Ho et al.'s axial attention).

    Args:
        dim: channels C (divisible by ``num_heads``). num_heads: heads (Axial-DeepLab: 8 groups).
        span: m, odd (65, Axial-DeepLab's span for segmentation; an axis of at most (m + 1) / 2 pixels
            is attended globally). positional: Axial-DeepLab's terms (True) or none (Ho et al.).
        sequential: the row pass reads the column pass's output (True, Axial-DeepLab's height then
            width) or both read the input and their outputs are summed (False).
        qkv_bias (False), attn_drop, proj_drop: as the other ops.

    The official Axial-DeepLab code also puts BatchNorms on the projections, the three logit terms
    and the outputs; we keep the paper's formula and scale the logits by 1/sqrt(d) instead.
    Initialisation: relative embeddings ~ N(0, 1/d); linear layers PyTorch's default.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the weights
    (B, heads, H, W, H + W) before dropout (``local`` form: for pixel (h, w) first the H weights of
    its column pass, then the W weights of its row pass; each part sums to one);
    :meth:`dense_attention` gives (B, heads, N, N): the row pass after the column pass
    (``sequential``, rows sum to one) or their sum. Cost O(N (H + W) C).

    Catalogue: equal (with positional=False; sequential=False is the catalogue's default,
    sum_axial_out=True, sequential=True its sum_axial_out=False; it has no positional terms)
    """

    layout = MAP
    attn_form = 'local'
    paper = 'Axial-DeepLab (Wang et al., ECCV 2020); Ho et al., 2019'
    complexity = 'O(N sqrt(N))'

    def __init__(self, dim: int, num_heads: int = 8, span: int = 65, *, positional: bool = True,
                 sequential: bool = True, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'AxialAttention: dim={dim} is not divisible by num_heads={num_heads}')
        if span < 1 or span % 2 == 0:
            raise ValueError(f'AxialAttention: span must be a positive odd number, got {span}')
        self.dim, self.num_heads, self.span, self.attn_drop = dim, num_heads, span, attn_drop
        self.positional, self.sequential = positional, sequential
        self.height = AxialPass(dim, num_heads, span, positional, qkv_bias, proj_drop)
        self.width = AxialPass(dim, num_heads, span, positional, qkv_bias, proj_drop)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        drop = self.attn_drop if self.training else 0.0
        cols = self.height(x.permute(0, 3, 2, 1).reshape(b * w, h, c), drop, return_attn)
        cols, a_col = cols if return_attn else (cols, None)
        cols = cols.view(b, w, h, c).permute(0, 3, 2, 1)                        # (B, C, H, W)
        rows_in = cols if self.sequential else x
        rows = self.width(rows_in.permute(0, 2, 3, 1).reshape(b * h, w, c), drop, return_attn)
        rows, a_row = rows if return_attn else (rows, None)
        rows = rows.view(b, h, w, c).permute(0, 3, 1, 2)
        y = rows if self.sequential else cols + rows
        if not return_attn:
            return y
        a_col = a_col.view(b, w, -1, h, h).permute(0, 2, 3, 1, 4)               # (B, h, H, W, H)
        a_row = a_row.view(b, h, -1, w, w).permute(0, 2, 1, 3, 4)               # (B, h, H, W, W)
        return y, torch.cat([a_col, a_row], dim=-1)

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, heads, H, W, H + W) -> (B, heads, N, N): the row pass's dense weights times the
        column pass's (``sequential``), or their sum."""
        h, w = int(hw[0]), int(hw[1])
        n = h * w
        rows = torch.arange(h, device=weights.device).view(h, 1, 1)
        cols = torch.arange(w, device=weights.device).view(1, w, 1)
        tgt = (rows * w + cols)
        col_src = torch.arange(h, device=weights.device).view(1, 1, h) * w + cols      # (i, w)
        row_src = rows * w + torch.arange(w, device=weights.device).view(1, 1, w)      # (h, j)

        def dense(part: Tensor, src: Tensor) -> Tensor:
            out = part.new_zeros(*part.shape[:2], n * n)
            index = (tgt.expand_as(src) * n + src).reshape(-1)
            out.index_add_(2, index, part.reshape(*part.shape[:2], -1))
            return out.view(*part.shape[:2], n, n)

        d_col = dense(weights[..., :h], col_src.expand(h, w, h))
        d_row = dense(weights[..., h:], row_src.expand(h, w, w))
        return d_row @ d_col if self.sequential else d_row + d_col


@ATTENTION.register_module()
class RelativeAttention2d(AttentionOp):
    r"""CoAtNet's relative attention: global multi-head self-attention over the pixels with a
    learnable bias of the offset between query and key (CoAtNet, Eq. 3).

    .. math::
        y_i = \sum_j \mathrm{softmax}_{j}\Big(\frac{q_i^\top k_j}{\sqrt{d}} + w_{i-j}\Big)\, v_j

    softmax over all keys j of the map; :math:`w_{i-j}` one scalar per head and 2D offset, read
    from a table (heads, 2S - 1, 2S - 1) made for an S x S map; ``q``, ``k``, ``v`` one linear layer,
    an output projection. The bias depends on i - j only: translation-equivariant.

    Args:
        dim: channels C. num_heads: heads (None: CoAtNet's head size 32, dim // 32).
        bias_size: S, the map size the table is made for (CoAtNet's S3 at 224 px: 14); other
            sizes read it with offsets scaled and bilinear interpolation (CoAtNet's recipe for a
            change of resolution). qkv_bias (True), attn_drop, proj_drop: as the other ops.

    Initialisation: table ~ trunc_normal(std=0.02); linear layers PyTorch's default. The N x N
    bias is formed once per call (not per sample) and handed to SDPA.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the weights
    (B, heads, N, N) before dropout (``dense`` form, rows sum to one over the keys). Cost O(N^2 C).

    Catalogue: differs: its CoAtNet stages use plain multi-head attention with no relative bias,
    so the attention ignores where pixels are (permuting the pixels permutes its output); we add the
    paper's w_{i-j} (equal to the catalogue's attention with the bias at zero)
    """

    layout = MAP
    attn_form = 'dense'
    paper = 'CoAtNet (Dai et al., NeurIPS 2021)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, num_heads: Optional[int] = None, bias_size: int = 14, *, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if bias_size < 1:
            raise ValueError(f'RelativeAttention2d: bias_size must be >= 1, got {bias_size}')
        self.dim, self.bias_size, self.attn_drop = dim, bias_size, attn_drop
        self.num_heads = default_heads('RelativeAttention2d', dim, num_heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(self.num_heads, 2 * bias_size - 1,
                                                                     2 * bias_size - 1))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self, h: int, w: int) -> Tensor:
        """(heads, N, N): w_{i-j} for an h x w map."""
        return relative_bias(resize_relative_table(self.relative_position_bias_table, h, w), h, w)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        h, w = x.shape[2:]
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(map_to_tokens(x)).chunk(3, dim=-1))
        out = attend_biased(q, k, v, self.position_bias(h, w), self.attn_drop if self.training else 0.0,
                            return_attn)
        out, weights = out if return_attn else (out, None)
        y = tokens_to_map(self.proj_drop(self.proj(merge_heads(out))), (h, w))
        return (y, weights) if return_attn else y
