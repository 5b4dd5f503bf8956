"""Criss-cross attention (Huang et al., "CCNet: Criss-Cross Attention for Semantic Segmentation",
ICCV 2019 / TPAMI 2020, arXiv:1811.11721).

Each pixel attends to the pixels of its own row and column only, so one pass costs
O(HW (H + W)) instead of O((HW)^2); CCNet applies the module twice (recurrently) to reach
every pixel.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..layouts import MAP
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import Scale


@ATTENTION.register_module()
class CrissCrossAttention(AttentionOp):
    r"""Criss-cross attention on maps (CCNet, Eq. 1-2), pure PyTorch.

    .. math::
        e_{u,v} = Q_u^\top K_v,\ v \in \Omega_u,\qquad
        A_u = \mathrm{softmax}_{v \in \Omega_u}(e_{u,\cdot}),\qquad
        Y_u = \gamma \sum_{v \in \Omega_u} A_{u,v} V_v + X_u

    where :math:`\Omega_u` is the set of pixels in the row and the column of pixel ``u``; ``u``
    itself is counted once (as in mmcv: the column branch drops the pixel itself). One softmax runs
    jointly over the H + W - 1 positions. ``Q``, ``K`` are 1x1 convolutions C -> C/8, ``V`` a 1x1
    convolution C -> C, ``gamma`` a learnable scalar starting at 0 (so the block starts as the
    identity). Parameter names (``query_conv``, ``key_conv``, ``value_conv``, ``gamma.scale``)
    equal mmcv's ``CrissCrossAttention`` so checkpoints load in either.

    Args:
        dim: C (at least 8; the query/key width is C // 8).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the weights
    (B, 1, H, W, H + W) (``local`` form: for pixel (h, w), first the H pixels (i, w) of its column,
    the pixel itself at weight 0, then the W pixels (h, j) of its row; sums to one over the last
    axis); :meth:`dense_attention` scatters them to (B, 1, N, N). Cost O(HW (H + W) C).

    Catalogue: differs: it builds its -inf diagonal on the CPU, so it fails on CUDA inputs; ours is
    device-agnostic (equal on CPU, and equal to mmcv's ``CrissCrossAttention``)
    """

    layout = MAP
    kind = 'block'
    attn_form = 'local'
    paper = 'CCNet (Huang et al., ICCV 2019)'
    complexity = 'O(N sqrt(N))'

    def __init__(self, dim: int):
        super().__init__()
        if dim < 8:
            raise ValueError(f'CrissCrossAttention: dim must be >= 8 (query/key width is dim // 8), '
                             f'got {dim}')
        self.dim = dim
        self.query_conv = nn.Conv2d(dim, dim // 8, 1)
        self.key_conv = nn.Conv2d(dim, dim // 8, 1)
        self.value_conv = nn.Conv2d(dim, dim, 1)
        self.gamma = Scale(0.0)

    @property
    def in_channels(self) -> int:  # mmcv's attribute name
        return self.dim

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        _, _, h, w = x.shape
        q, k, v = self.query_conv(x), self.key_conv(x), self.value_conv(x)
        # column energies: pixel (h, w) against (i, w) for every row i -> (B, H, W, H)
        e_col = torch.einsum('bchw,bciw->bhwi', q, k)
        self_pos = torch.eye(h, dtype=torch.bool, device=x.device).view(h, 1, h)
        e_col = e_col.masked_fill(self_pos, float('-inf'))
        # row energies: pixel (h, w) against (h, j) for every column j -> (B, H, W, W)
        e_row = torch.einsum('bchw,bchj->bhwj', q, k)
        attn = torch.cat([e_col, e_row], dim=-1).softmax(dim=-1)
        a_col, a_row = attn.split([h, w], dim=-1)
        out = torch.einsum('bhwi,bciw->bchw', a_col, v) + torch.einsum('bhwj,bchj->bchw', a_row, v)
        out = self.gamma(out) + x
        return (out, attn.unsqueeze(1)) if return_attn else out

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, 1, H, W, H + W) -> (B, 1, N, N): the weight of pixel s's value in pixel t's output."""
        h, w = int(hw[0]), int(hw[1])
        n = h * w
        rows = torch.arange(h, device=weights.device).view(h, 1, 1)
        cols = torch.arange(w, device=weights.device).view(1, w, 1)
        col_src = torch.arange(h, device=weights.device).view(1, 1, h) * w + cols      # (i, w)
        row_src = rows * w + torch.arange(w, device=weights.device).view(1, 1, w)      # (h, j)
        src = torch.cat([col_src.expand(h, w, h), row_src.expand(h, w, w)], dim=-1)     # (H, W, H+W)
        tgt = (rows * w + cols).expand(h, w, h + w)
        dense = weights.new_zeros(*weights.shape[:2], n * n)
        dense.index_add_(2, (tgt * n + src).reshape(-1), weights.reshape(*weights.shape[:2], -1))
        return dense.view(*weights.shape[:2], n, n)
