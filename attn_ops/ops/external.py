"""External attention (Guo et al., "Beyond Self-attention: External Attention using Two Linear
Layers for Visual Tasks", TPAMI 2022, arXiv:2105.02358).

Two small learnable memories replace the keys and values of self-attention, so the cost is
linear in the number of tokens N. The paper's *double normalisation* first takes a softmax over
the N tokens (each memory unit distributes its attention over the input), then an L1
normalisation over the S memory units (each token's row sums to one).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import MAP, attend_mask, zero_padded
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import MAP_BUDGET, build_norm, chunk_spans, float32_math, upcast


def double_normalize(logits: Tensor, token_dim: int, unit_dim: int, eps: float = 1e-9,
                     mask: Optional[Tensor] = None) -> Tensor:
    """EANet's double normalisation: softmax over tokens, then L1 over memory units (+ ``eps``).

    Computed in float32 whatever the autocast dtype, returned in ``logits.dtype``. ``mask`` is a
    bool tensor broadcastable to ``logits`` (True = real token): padded tokens get no attention and
    their rows are zero. ``eps`` (1e-9, the official code's) keeps a token whose S softmax entries all
    underflow at zero instead of 0/0.
    """
    with float32_math(logits):
        attn = upcast(logits)
        if mask is not None:
            attn = attn.masked_fill(~attend_mask(mask, dim=token_dim), float('-inf'))
        attn = attn.softmax(dim=token_dim)
        if mask is not None:
            attn = attn.masked_fill(~mask, 0.0)
        attn = attn / attn.sum(dim=unit_dim, keepdim=True).add_(eps)
    return attn if attn.dtype == logits.dtype else attn.to(logits.dtype)


FUSED_MIN = 2 ** 19    # smaller (G, N, S) maps take the plain two-node path: the fused node's fixed cost
                       # outweighs its savings there (measured: tools/benchmark_ops.py --clock cpu, README)


def _safe_max(m: Tensor) -> Tensor:
    """Column maxima with -inf (a sample without real tokens) replaced by 0, for a shift of exp."""
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


class _FusedExternalAttention(torch.autograd.Function):
    r"""External attention in one autograd node: the two normalisations without the reference's
    intermediate maps, and the textbook gradients written out.

    With :math:`A^{(1)} = \mathrm{softmax}_N(X M_k^\top)` computed as
    :math:`\exp(L - m)\,\mathrm{diag}(c)` (``m`` the column maxima, :math:`c_s = 1/\sum_n
    \exp(L_{ns} - m_s)`; padded tokens excluded), :math:`r_n = 1 / (\sum_s A^{(1)}_{ns} + \epsilon)`
    and :math:`A = \mathrm{diag}(r) A^{(1)}`:

    .. math::
        Y = A M_v^\top,\quad
        \partial A^{(1)} = \mathrm{diag}(r)\big(\partial A - \mathrm{rowsum}(\partial A \odot A)\big),\quad
        \partial L = A^{(1)} \odot \big(\partial A^{(1)} - \mathrm{colsum}_N(\partial A^{(1)} \odot A^{(1)})\big)

    Backward keeps ``x``, ``m``, ``c``, ``r`` and, unless ``recompute``, :math:`A^{(1)}` (one
    N x S map where the reference keeps two); with ``recompute`` it keeps no N x S map and forms
    :math:`A^{(1)}` again from ``x`` (one more N x C x S matmul). The maps are formed ``chunk``
    tokens at a time; above one chunk each direction takes two passes over the chunks and
    ``recompute`` is implied.

    Shapes: x (G, N, C), mk (S, C), bk (S,) or None (a bias of the logits: it cancels in the
    softmax over N, its gradient is zero up to rounding), mv (C_out, S), mask (G, N) bool or None
    -> (G, N, C_out).
    """

    @staticmethod
    def forward(ctx, x, mk, bk, mv, mask, eps, chunk, recompute):
        spans = chunk_spans(x.shape[1], chunk)
        a1 = None
        if len(spans) == 1:
            a1 = _logits(x, mk, bk, mask, spans[0])
            m = _safe_max(a1.amax(dim=1, keepdim=True))
            total = a1.sub_(m).exp_().sum(dim=1, keepdim=True)
        else:                                              # online column max and sum of exp
            m = x.new_full((x.shape[0], 1, mk.shape[0]), float('-inf'))
            total = torch.zeros_like(m)
            for sl in spans:
                logits = _logits(x, mk, bk, mask, sl)
                m_new = torch.maximum(m, logits.amax(dim=1, keepdim=True))
                shift = _safe_max(m_new)
                total = total * torch.exp(_safe_max(m) - shift) + torch.exp(logits - shift).sum(1, keepdim=True)
                m = m_new
            m = _safe_max(m)
        c = torch.where(total > 0, 1.0 / total, torch.zeros_like(total))          # (G, 1, S)
        r = x.new_empty(x.shape[0], x.shape[1], 1)
        out = x.new_empty(x.shape[0], x.shape[1], mv.shape[0]) if len(spans) > 1 else None
        for sl in spans:
            a1 = a1.mul_(c) if len(spans) == 1 else _softmax_n(x, mk, bk, mask, sl, m, c)
            r[:, sl] = 1.0 / (a1.sum(dim=-1, keepdim=True) + eps)
            y = (a1 * r[:, sl]) @ mv.T
            if out is None:
                out = y
            else:
                out[:, sl] = y
        ctx.save_for_backward(x, mk, bk, mv, mask, m, c, r, a1 if len(spans) == 1 and not recompute else None)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        with float32_math(grad):           # a backward called under autocast must not cast these sums
            return _FusedExternalAttention._backward(ctx, grad.to(ctx.saved_tensors[0].dtype))

    @staticmethod
    def _backward(ctx, grad):
        x, mk, bk, mv, mask, m, c, r, kept = ctx.saved_tensors
        spans = chunk_spans(x.shape[1], ctx.chunk)

        def grad_a1(sl):
            """(A^(1), dA^(1)) of a span, and the span's share of dM_v."""
            a1 = kept if kept is not None else _softmax_n(x, mk, bk, mask, sl, m, c)
            a = a1 * r[:, sl]
            da = grad[:, sl] @ mv                                                  # (G, n, S)
            share = grad[:, sl].reshape(-1, grad.shape[-1]).T @ a.reshape(-1, a.shape[-1])
            da.sub_(torch.linalg.vecdot(da, a).unsqueeze(-1)).mul_(r[:, sl])      # L1 over S
            return a1, da, share

        grad_mv = torch.zeros_like(mv)
        colsum = torch.zeros_like(c)
        saved = None
        for sl in spans:                                   # pass 1: dM_v and the column sums
            a1, da1, share = grad_a1(sl)
            grad_mv += share
            colsum += torch.linalg.vecdot(da1, a1, dim=1).unsqueeze(1)
            saved = (a1, da1) if len(spans) == 1 else None
        grad_x = torch.empty_like(x) if len(spans) > 1 else None
        grad_mk = torch.zeros_like(mk)
        grad_bk = torch.zeros_like(bk) if bk is not None else None
        for sl in spans:                                   # pass 2: softmax over N, then x, M_k, b_k
            a1, da1 = saved if saved is not None else grad_a1(sl)[:2]
            dlogits = da1.sub_(colsum).mul_(a1)
            gx = dlogits @ mk
            grad_mk += dlogits.reshape(-1, dlogits.shape[-1]).T @ x[:, sl].reshape(-1, x.shape[-1])
            if grad_bk is not None:
                grad_bk += dlogits.sum(dim=(0, 1))
            if grad_x is None:
                grad_x = gx
            else:
                grad_x[:, sl] = gx
        return grad_x, grad_mk, grad_bk, grad_mv, None, None, None, None


def _softmax_n(x: Tensor, mk: Tensor, bk: Optional[Tensor], mask: Optional[Tensor], sl: slice, m: Tensor,
               c: Tensor) -> Tensor:
    """A span of softmax over N from the column statistics: exp(L - m) c, (G, n, S)."""
    return _logits(x, mk, bk, mask, sl).sub_(m).exp_().mul_(c)


def _logits(x: Tensor, mk: Tensor, bk: Optional[Tensor], mask: Optional[Tensor], sl: slice) -> Tensor:
    """x[:, sl] M_k^T (+ b_k) with padded tokens at -inf: (G, n, S)."""
    logits = x[:, sl] @ mk.T if bk is None else torch.addmm(bk, x[:, sl].reshape(-1, x.shape[-1]), mk.T).view(
        x.shape[0], -1, mk.shape[0])
    if mask is not None:
        logits = logits.masked_fill_(~mask[:, sl, None], float('-inf'))
    return logits


def fused_external(x: Tensor, mk: Tensor, mv: Tensor, mask: Optional[Tensor] = None, eps: float = 1e-9,
                   recompute: bool = False, bk: Optional[Tensor] = None) -> Tensor:
    """``double_normalize(x mk^T + bk, softmax over N, L1 over S) mv^T`` through
    :class:`_FusedExternalAttention`: x (G, N, C), mk (S, C), mv (C_out, S), mask (G, N) ->
    (G, N, C_out), zero at padded tokens. Runs in float32 (float64 stays) whatever the autocast
    dtype; returns the input's dtype.

    Backward keeps the one N x S map while it fits in :data:`MAP_BUDGET` elements and recomputes
    it (in chunks) above; ``recompute=True`` always recomputes (least memory, one more matmul).
    Maps below :data:`FUSED_MIN` elements (e.g. B = 2, N < 4096, S = 64) run the same formula as
    two autograd nodes (softmax, then L1), which is faster there and keeps one more N x S map.
    """
    with float32_math(x):
        x32, mk32, mv32, bk32 = upcast(x), upcast(mk), upcast(mv), None if bk is None else upcast(bk)
        if recompute or x.shape[0] * x.shape[1] * mk.shape[0] >= FUSED_MIN:
            chunk = max(1, MAP_BUDGET // (x.shape[0] * mk.shape[0]))
            out = _FusedExternalAttention.apply(x32, mk32, bk32, mv32, mask, eps, chunk, recompute)
        else:
            m = mask.unsqueeze(-1) if mask is not None else None
            out = F.linear(double_normalize(F.linear(x32, mk32, bk32), token_dim=1, unit_dim=2, eps=eps, mask=m), mv32)
    return out if out.dtype == x.dtype else out.to(x.dtype)


@ATTENTION.register_module()
class ExternalAttention(AttentionOp):
    r"""External attention on tokens (EANet, TPAMI 2022, Eq. 5).

    .. math::
        A = \mathrm{L1}_{S}\big(\mathrm{softmax}_{N}(X M_k^\top)\big),\qquad Y = A M_v

    with memories :math:`M_k \in \mathbb{R}^{S \times C}`, :math:`M_v \in \mathbb{R}^{C \times S}`
    (two bias-free linear layers, weights initialised :math:`\mathcal{N}(0, 0.001^2)` as in the
    catalogue). Softmax runs over the N tokens, then each token's S weights are L1-normalised
    (denominator + ``eps``, as the official code).

    Args:
        dim: channels C.
        S: number of memory units (paper default 64).
        eps: L1 denominator offset (official 1e-9).

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool, True = real token -> (B, N, C). Padded tokens
    get no attention weight and zero output. ``return_attn=True`` also returns ``A`` as
    (B, 1, N, S) (``memory`` form; each real token's row sums to one over S). Cost O(N S C).

    Catalogue: differs: no eps in its L1 normalisation, so a token whose S softmax entries all
    underflow (large inputs) gives 0/0 = NaN; we add the official 1e-9 (equal on ordinary inputs)
    """

    kind = 'attention'
    supports_mask = True
    attn_form = 'memory'
    paper = 'EANet (Guo et al., TPAMI 2022)'
    complexity = 'O(N)'

    def __init__(self, dim: int, S: int = 64, *, eps: float = 1e-9, recompute: bool = False):
        super().__init__()
        self.dim, self.S, self.eps, self.recompute = dim, S, eps, recompute
        self.mk = nn.Linear(dim, S, bias=False)
        self.mv = nn.Linear(S, dim, bias=False)
        nn.init.normal_(self.mk.weight, std=0.001)
        nn.init.normal_(self.mv.weight, std=0.001)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        if not return_attn:
            return fused_external(x, self.mk.weight, self.mv.weight, mask, self.eps, self.recompute)
        m = mask.unsqueeze(-1) if mask is not None else None
        attn = double_normalize(self.mk(x), token_dim=1, unit_dim=2, eps=self.eps, mask=m)
        return zero_padded(self.mv(attn), mask), attn.unsqueeze(1)


@ATTENTION.register_module()
class ExternalAttentionBlock(AttentionOp):
    r"""The official EANet block on maps (``External_attention`` of the EANet segmentation head).

    .. math::
        F = \mathrm{conv}_{1\times1}(X),\quad
        A = \mathrm{L1}_{k}\big(\mathrm{softmax}_{N}(M_k F)\big),\quad
        Y = \mathrm{ReLU}\big(X + \mathrm{norm}(\mathrm{conv}_{1\times1}(M_v A))\big)

    ``M_k`` (Conv1d C->k) and ``M_v`` (Conv1d k->C) are bias-free; ``M_v`` starts as the transpose of
    ``M_k`` (tied at initialisation, trained independently). Softmax over the N = H*W positions,
    then L1 over the k memory units with ``eps`` = 1e-9, as the official code. Convolutions are
    initialised N(0, 2/n) with n = kernel area x out channels, as the official code.

    Args:
        dim: channels C.
        k: memory units (paper default 64).
        norm_cfg: norm config of the output 1x1 conv (``BN``, ``SyncBN``, ``GN``...; mmcv's spelling).
        eps: L1 denominator offset.
        recompute: as :class:`ExternalAttention` (the memories run through :func:`fused_external`).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``A`` as (B, 1, N, k),
    N = H*W row-major (``memory`` form; rows sum to one over k). Cost O(N k C).

    Catalogue: no counterpart (the catalogue has only the token form)
    """

    layout = MAP
    kind = 'block'
    attn_form = 'memory'
    paper = 'EANet (Guo et al., TPAMI 2022), official block'
    complexity = 'O(N)'

    def __init__(self, dim: int, k: int = 64, *, norm_cfg: Optional[dict] = None, eps: float = 1e-9,
                 recompute: bool = False):
        super().__init__()
        self.dim, self.k, self.eps, self.recompute = dim, k, eps, recompute
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.linear_0 = nn.Conv1d(dim, k, 1, bias=False)
        self.linear_1 = nn.Conv1d(k, dim, 1, bias=False)
        self.conv2 = nn.Conv2d(dim, dim, 1, bias=False)
        self.norm = build_norm(norm_cfg, dim, MAP)
        self.init_weights()

    def init_weights(self) -> None:
        for m in (self.conv1, self.conv2):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        # The official code ties the two memories' storage and initialises the shared tensor last
        # through linear_1 (std sqrt(2 / C)); we copy instead of sharing storage.
        with torch.no_grad():
            nn.init.normal_(self.linear_1.weight, 0.0, math.sqrt(2.0 / self.dim))
            self.linear_0.weight.copy_(self.linear_1.weight.permute(1, 0, 2))
        if getattr(self.norm, 'weight', None) is not None:
            nn.init.ones_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        feat = self.conv1(x).flatten(2)                                  # (B, C, N)
        if return_attn:
            attn = double_normalize(self.linear_0(feat), token_dim=2, unit_dim=1, eps=self.eps)  # (B, k, N)
            out = self.linear_1(attn).view(b, c, h, w)
        else:
            out = fused_external(feat.transpose(1, 2), self.linear_0.weight[:, :, 0], self.linear_1.weight[:, :, 0],
                                 eps=self.eps, recompute=self.recompute).transpose(1, 2).reshape(b, c, h, w)
        out = F.relu(self.norm(self.conv2(out)) + x)
        return (out, attn.transpose(1, 2).unsqueeze(1)) if return_attn else out


@ATTENTION.register_module()
class MultiHeadExternalAttention(AttentionOp):
    r"""Multi-head external attention, the EAMLP form of EANet (Sec. 3.3 of the paper).

    Tokens are expanded to ``coef * dim`` channels and split into ``num_heads * coef`` heads; each
    head attends to a memory of ``k = 256 // coef`` units:

    .. math::
        A_h = \mathrm{L1}_{k}\big(\mathrm{softmax}_{N}(X_h M_k^\top)\big),\quad
        Y = \mathrm{proj}\big(\Vert_h A_h M_v\big)

    ``M_k``, ``M_v`` are shared across heads (Linear with bias), L1 uses eps 1e-9.

    Args:
        dim: channels C (divisible by ``num_heads``).
        num_heads: heads before expansion (the effective count is ``num_heads * coef``).
        coef: channel expansion (paper 4).
        attn_drop, proj_drop: dropout on the attention map and on the output.
        eps: L1 denominator offset (official 1e-9).
        recompute: as :class:`ExternalAttention`; the heads run through :func:`fused_external` as
            one batch (the explicit path when ``return_attn`` or attention dropout is active). The
            bias of ``linear_0`` cancels in the softmax over N (its gradient is zero).

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) -> (B, N, C). ``return_attn=True`` also returns the
    maps (B, num_heads * coef, N, k) before attention dropout (``memory`` form; rows sum to one
    over k). Cost O(N k C coef).

    Catalogue: no counterpart (checked against the official EAMLP code's structure)
    """

    supports_mask = True
    attn_form = 'memory'
    paper = 'EANet (Guo et al., TPAMI 2022), EAMLP multi-head'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_heads: int = 8, coef: int = 4, *, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, eps: float = 1e-9, recompute: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'MultiHeadExternalAttention: dim={dim} is not divisible by '
                             f'num_heads={num_heads}')
        if 256 % coef:
            raise ValueError(f'MultiHeadExternalAttention: coef={coef} must divide 256 (k = 256 // coef)')
        self.dim, self.coef, self.eps, self.recompute = dim, coef, eps, recompute
        self.num_heads = num_heads * coef
        self.k = 256 // coef
        head_dim = dim * coef // self.num_heads
        self.trans_dims = nn.Linear(dim, dim * coef)
        self.linear_0 = nn.Linear(head_dim, self.k)
        self.linear_1 = nn.Linear(self.k, head_dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim * coef, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, n, _ = x.shape
        heads = self.num_heads
        h = self.trans_dims(x).view(b, n, heads, -1).transpose(1, 2)            # (B, H, N, d)
        if return_attn or (self.training and self.attn_drop.p > 0):
            m = mask[:, None, :, None] if mask is not None else None
            attn = double_normalize(self.linear_0(h), token_dim=2, unit_dim=3, eps=self.eps, mask=m)
            out = self.linear_1(self.attn_drop(attn))
        else:                                                                   # heads as batch
            m = mask[:, None].expand(b, heads, n).reshape(b * heads, n) if mask is not None else None
            out = fused_external(h.reshape(b * heads, n, -1), self.linear_0.weight, self.linear_1.weight, m, self.eps,
                                 self.recompute, bk=self.linear_0.bias) + self.linear_1.bias
            out = out.view(b, heads, n, -1)
        out = zero_padded(self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, -1))), mask)
        return (out, attn) if return_attn else out
