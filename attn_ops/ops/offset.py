"""Offset-attention (Guo et al., "PCT: Point Cloud Transformer", Computational Visual Media 2021,
arXiv:2012.09688)."""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from ..layouts import attend_mask, masked_apply, zero_padded
from ..registry import ATTENTION
from .base import AttentionOp


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
    transform ``W_t`` are linear with bias; ``norm`` defaults to BatchNorm over channels.

    Args:
        channels: C (divisible by 4). norm_cfg: mmcv norm config applied to (tokens, C).
        eps: L1 offset.

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool -> (B, N, C). Padded tokens are excluded from the
    softmax, the L1 sum and the norm's batch statistics; their outputs are zero. Cost O(N^2 C).
    """

    dim_arg = 'channels'
    supports_mask = True
    paper = 'PCT (Guo et al., CVM 2021)'
    complexity = 'O(N^2)'

    def __init__(self, channels: int, norm_cfg: Optional[dict] = None, eps: float = 1e-9):
        super().__init__()
        if channels % 4:
            raise ValueError(f'OffsetAttention: channels={channels} must be divisible by 4')
        self.channels, self.eps = channels, eps
        self.qk = nn.Linear(channels, channels // 4, bias=False)
        self.v = nn.Linear(channels, channels)
        self.trans = nn.Linear(channels, channels)
        self.norm = build_norm_layer(norm_cfg or dict(type='BN1d'), channels)[1]

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        self.check_input(x, mask)
        q = self.qk(x)                                                   # (B, N, C/4)
        energy = q @ q.transpose(1, 2)                                   # (B, N_i, N_j)
        if mask is not None:
            energy = energy.masked_fill(~attend_mask(mask)[:, None, :], float('-inf'))
        attn = energy.softmax(dim=-1)
        if mask is not None:
            attn = attn.masked_fill(~mask[:, :, None], 0.0)             # padded queries give nothing
        attn = attn / (self.eps + attn.sum(dim=1, keepdim=True))
        x_r = attn.transpose(1, 2) @ self.v(x)                           # (B, N_j, C)
        offset = masked_apply(self.norm, self.trans(x - x_r), mask)     # norm statistics: real tokens
        return zero_padded(x + F.relu(offset), mask)
