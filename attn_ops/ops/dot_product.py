"""Scaled dot-product attention (Vaswani et al., "Attention Is All You Need", NeurIPS 2017):
single-head self-attention, multi-head self-attention and cross-attention.

All three run through :func:`torch.nn.functional.scaled_dot_product_attention` by default, which
picks a fused kernel (flash / memory-efficient on CUDA, flash on CPU) that never materialises the
N x M weight matrix. ``return_attn=True`` takes the explicit path instead (timm's ``fused_attn``
idea): ``q k^T -> mask -> softmax -> v`` with the weights kept and returned; both paths give the
same output.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import attend_mask, check_mask, check_tokens, zero_padded
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import float32_math, upcast


def attend(q: Tensor, k: Tensor, v: Tensor, key_mask: Optional[Tensor], dropout_p: float,
           return_attn: bool = False):
    """``softmax_keys(q k^T / sqrt(d)) v``: q (B, h, N, d), k/v (B, h, M, d), key_mask (B, M).

    Fused (SDPA) unless ``return_attn``; then also returns the weights (B, h, N, M) before dropout,
    softmax in float32, masked keys exactly zero.
    """
    attn_mask = attend_mask(key_mask)[:, None, None, :] if key_mask is not None else None
    if not return_attn:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    with float32_math(q):
        logits = (upcast(q) * q.shape[-1] ** -0.5) @ upcast(k).transpose(-2, -1)
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float('-inf'))
        weights = logits.softmax(dim=-1)
    weights = weights.to(v.dtype)
    return F.dropout(weights, dropout_p) @ v, weights


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, h*d) -> (B, h, N, d)."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, h, N, d) -> (B, N, h*d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _finish(op: nn.Module, out, mask: Optional[Tensor], return_attn: bool):
    """Merge heads, project, zero padded queries (outputs and weight rows)."""
    out, weights = out if return_attn else (out, None)
    y = zero_padded(op.proj_drop(op.proj(merge_heads(out))), mask)
    if not return_attn:
        return y
    if mask is not None:
        weights = weights.masked_fill(~mask[:, None, :, None], 0.0)
    return y, weights


@ATTENTION.register_module()
class MultiHeadAttention(AttentionOp):
    r"""Multi-head self-attention.

    .. math::
        \mathrm{head}_h = \mathrm{softmax}_{\text{keys}}\!\Big(\frac{Q_h K_h^\top}{\sqrt{d_h}}\Big) V_h,
        \qquad Y = \big[\mathrm{head}_1 \Vert \dots \Vert \mathrm{head}_H\big] W_o

    with ``Q, K, V = X W_{qkv}`` (one fused linear), ``d_h = dim / num_heads``; softmax over the
    keys (last axis). Padded keys are excluded, padded queries return zeros.

    Args:
        dim: channels C. num_heads: H. qkv_bias: bias of the fused qkv projection.
        attn_drop: dropout on the attention weights (training only). proj_drop: on the output.

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool -> (B, N, C). ``return_attn=True`` also returns the
    weights (B, H, N, N) before dropout (``dense`` form, rows sum to one over the keys; padded keys
    exactly zero). Cost O(N^2 C), memory O(N C) on the fused path.

    Catalogue: equal (``ScaledDotProductAttention`` with d_k = d_v = dim / H; its mask is
    applied as given, ours marks real tokens)
    """

    supports_mask = True
    attn_form = 'dense'
    paper = 'Transformer (Vaswani et al., NeurIPS 2017)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = False, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'{type(self).__name__}: dim={dim} is not divisible by num_heads={num_heads}')
        self.dim, self.num_heads, self.attn_drop = dim, num_heads, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        out = attend(q, k, v, mask, self.attn_drop if self.training else 0.0, return_attn)
        return _finish(self, out, mask, return_attn)


@ATTENTION.register_module()
class SelfAttention(MultiHeadAttention):
    r"""Single-head scaled dot-product self-attention (:class:`MultiHeadAttention` with one head).

    .. math::
        Y = \mathrm{softmax}_{\text{keys}}\big(Q K^\top / \sqrt{d}\big)\, V\, W_o,\qquad
        Q, K, V = X W_{qkv},\ d = \mathrm{dim}

    Args:
        dim: channels C. qkv_bias, attn_drop, proj_drop: as :class:`MultiHeadAttention`.

    Shapes: (B, N, C), mask (B, N) -> (B, N, C); ``return_attn=True`` also returns the weights
    (B, 1, N, N), rows sum to one over the keys.

    Catalogue: equal (``ScaledDotProductAttention`` with one head)
    """

    def __init__(self, dim: int, *, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, 1, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)


@ATTENTION.register_module()
class CrossAttention(AttentionOp):
    r"""Multi-head cross-attention: queries from ``x``, keys and values from ``context``.

    .. math::
        Y = \big[\Vert_h\,\mathrm{softmax}_{\text{context}}\big(Q_h K_h^\top/\sqrt{d_h}\big) V_h\big] W_o,
        \quad Q = X W_q,\; [K, V] = C W_{kv}

    Args:
        dim: channels of ``x`` (and of the output). num_heads: H.
        context_dim: channels of ``context`` (default ``dim``). qkv_bias, attn_drop, proj_drop: as
            :class:`MultiHeadAttention`.

    Shapes: ``forward(x, context=None, *, mask=None, context_mask=None, return_attn=False)`` with
    ``x`` (B, N, C), ``context`` (B, M, C_ctx) (defaults to ``x``: self-attention), ``mask`` (B, N)
    marking real queries, ``context_mask`` (B, M) real context tokens (defaults to ``mask`` when
    ``context`` is ``x``) -> (B, N, C); ``return_attn=True`` also returns the weights (B, H, N, M),
    rows sum to one over the context. Cost O(N M C).

    Catalogue: no counterpart
    """

    supports_mask = True
    attn_form = 'dense'
    paper = 'Transformer (Vaswani et al., NeurIPS 2017)'
    complexity = 'O(N M)'

    def __init__(self, dim: int, num_heads: int = 8, *, context_dim: Optional[int] = None,
                 qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'CrossAttention: dim={dim} is not divisible by num_heads={num_heads}')
        self.dim, self.num_heads, self.attn_drop = dim, num_heads, attn_drop
        self.context_dim = context_dim or dim
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(self.context_dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, context: Optional[Tensor] = None, *, mask: Optional[Tensor] = None,
                context_mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        if context is None:
            if self.context_dim != self.dim:
                raise ValueError(f'CrossAttention: context_dim={self.context_dim} differs from '
                                 f'dim={self.dim}, so a context must be given')
            context, context_mask = x, (mask if context_mask is None else context_mask)
        check_tokens('CrossAttention (context)', context, self.context_dim)
        if context.shape[0] != x.shape[0]:
            raise ValueError(f'CrossAttention: x has batch {x.shape[0]} but context has batch '
                             f'{context.shape[0]}')
        check_mask(self, context_mask, context.shape[0], context.shape[1], what='context_mask')
        q = split_heads(self.q(x), self.num_heads)
        k, v = (split_heads(t, self.num_heads) for t in self.kv(context).chunk(2, dim=-1))
        out = attend(q, k, v, context_mask, self.attn_drop if self.training else 0.0, return_attn)
        return _finish(self, out, mask, return_attn)
