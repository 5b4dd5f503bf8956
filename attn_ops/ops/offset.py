"""Offset-attention (Guo et al., "PCT: Point Cloud Transformer", Computational Visual Media 2021,
arXiv:2012.09688)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torch import Tensor, nn

from ..layouts import TOKENS, attend_mask, masked_apply, zero_padded
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import build_norm, float32_math, upcast


@ATTENTION.register_module()
class OffsetAttention(AttentionOp):
    r"""PCT's offset-attention layer (the ``SA_Layer`` of PCT, Eq. 9-11).

    .. math::
        E = (X W_{qk})(X W_{qk})^\top,\quad
        \tilde A_{ij} = \mathrm{softmax}_j(E_{ij}),\quad
        A_{ij} = \tilde A_{ij} \Big/ \Big(\epsilon + \sum_{i'} \tilde A_{i'j}\Big)

    .. math::
        F_{sa,j} = \sum_i A_{ij}\, v_i,\qquad
        Y = X + \mathrm{ReLU}\big(\mathrm{norm}\big((X - F_{sa}) W_t + b_t\big)\big)

    Query and key projections share one bias-free weight ``W_qk`` (C -> C/4), no 1/sqrt(d) scale;
    softmax over the last axis (keys j), then L1 over the query axis i (eps 1e-9). ``v`` and the
    transform ``W_t`` are linear with bias; ``norm`` defaults to BatchNorm over channels. The
    attention sums run in float32 under autocast.

    Args:
        dim: C (divisible by 4). norm_cfg: norm config applied to the tokens' channels (mmcv's
            spelling: ``BN``, ``SyncBN``, ``LN``...).
        eps: L1 offset.
        chunk_size: when N is larger, attend in chunks of this many queries: each chunk takes
            its rows' log-sum-exp, then adds its share of the column sums and of the weighted
            values, and is recomputed in backward. Memory O(chunk_size N) instead of O(N^2), the
            same result to float rounding. On 2 CPU threads, forward+backward at N=4096 took 0.35x
            the time of the full map with chunks of 256 (0.5x with 512, about 1x with 1024: the
            chunk must stay in cache). ``None`` always materialises the N x N map.

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool -> (B, N, C). Padded tokens are excluded from the
    softmax, the L1 sum and the norm's batch statistics; their outputs are zero.
    ``return_attn=True`` takes the full-map path and also returns ``A`` as (B, 1, N, N) in the
    ``dense`` form ``W[b, 0, j, i] = A_ij``: row j holds the weights of the inputs i in output j and
    sums to one over i (PCT's L1); the softmax ran over j (columns of ``W``). Cost O(N^2 C).

    Catalogue: no counterpart (checked against PCT's ``SA_Layer``)
    """

    kind = 'block'
    supports_mask = True
    attn_form = 'dense'
    paper = 'PCT (Guo et al., CVM 2021)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, *, norm_cfg: Optional[dict] = None, eps: float = 1e-9,
                 chunk_size: Optional[int] = 256):
        super().__init__()
        if dim % 4:
            raise ValueError(f'OffsetAttention: dim={dim} must be divisible by 4')
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f'OffsetAttention: chunk_size must be a positive int or None, got {chunk_size}')
        self.dim, self.eps, self.chunk_size = dim, eps, chunk_size
        self.qk = nn.Linear(dim, dim // 4, bias=False)
        self.v = nn.Linear(dim, dim)
        self.trans = nn.Linear(dim, dim)
        self.norm = build_norm(norm_cfg, dim, TOKENS)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        q, v = self.qk(x), self.v(x)                                     # (B, N, C/4), (B, N, C)
        with float32_math(x):
            q32, v32 = upcast(q), upcast(v)
            if return_attn or self.chunk_size is None or x.shape[1] <= self.chunk_size:
                x_r, attn = self._attend(q32, v32, mask)
            else:
                x_r, attn = self._attend_chunked(q32, v32, mask), None
        offset = masked_apply(self.norm, self.trans(x - x_r.to(v.dtype)), mask)  # statistics: real tokens
        out = zero_padded(x + F.relu(offset), mask)
        return (out, attn.transpose(1, 2).unsqueeze(1).to(v.dtype)) if return_attn else out

    def _energy(self, q_rows: Tensor, q: Tensor, mask: Optional[Tensor]) -> Tensor:
        """E_ij = q_i . q_j for the given query rows, padded keys at -inf: (B, rows, N)."""
        energy = q_rows @ q.transpose(1, 2)
        if mask is not None:
            energy = energy.masked_fill(~attend_mask(mask)[:, None, :], float('-inf'))
        return energy

    def _attend(self, q: Tensor, v: Tensor, mask: Optional[Tensor]):
        """The full N x N map: returns (F_sa (B, N, C), A (B, N_i, N_j))."""
        attn = self._energy(q, q, mask).softmax(dim=-1)                  # over keys j
        if mask is not None:
            attn = attn.masked_fill(~mask[:, :, None], 0.0)             # padded queries give nothing
        attn = attn / (self.eps + attn.sum(dim=1, keepdim=True))         # L1 over queries i
        return attn.transpose(1, 2) @ v, attn                            # F_sa,j = sum_i A_ij v_i

    def _attend_chunked(self, q: Tensor, v: Tensor, mask: Optional[Tensor]) -> Tensor:
        """The same sums over query chunks I: with r_i = logsumexp_j E_ij and
        P_ij = exp(E_ij - r_i), F_sa,j = sum_i P_ij v_i / (eps + sum_i P_ij)."""
        n, step = q.shape[1], self.chunk_size
        grad = torch.is_grad_enabled() and (q.requires_grad or v.requires_grad)

        def rows_pass(q_rows, q_all, v_rows, m_rows):
            energy = self._energy(q_rows, q_all, mask)
            p = torch.exp(energy - torch.logsumexp(energy, dim=-1, keepdim=True))
            if m_rows is not None:
                p = p.masked_fill(~m_rows[:, :, None], 0.0)
            return p.sum(dim=1), p.transpose(1, 2) @ v_rows              # (B, N), (B, N, C)

        col_sum, num = 0, 0
        for start in range(0, n, step):
            sl = slice(start, start + step)
            m_rows = mask[:, sl] if mask is not None else None
            args = (q[:, sl], q, v[:, sl], m_rows)
            c, u = checkpoint(rows_pass, *args, use_reentrant=False) if grad else rows_pass(*args)
            col_sum, num = col_sum + c, num + u
        return num / (self.eps + col_sum).unsqueeze(-1)
