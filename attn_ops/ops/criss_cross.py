"""Criss-cross attention (Huang et al., "CCNet: Criss-Cross Attention for Semantic Segmentation",
ICCV 2019 / TPAMI 2020, arXiv:1811.11721).

Each pixel attends to the pixels of its own row and column only, so one pass costs
O(HW (H + W)) instead of O((HW)^2); CCNet applies the module twice (recurrently) to reach
every pixel.
"""
from __future__ import annotations

import torch
from mmcv.cnn import Scale
from torch import Tensor, nn

from ..layouts import MAP
from ..registry import ATTENTION
from .base import AttentionOp


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
        channels: C (at least 8; the query/key width is C // 8).

    Shapes: (B, C, H, W) -> (B, C, H, W). Cost O(HW (H + W) C).
    """

    layout = MAP
    dim_arg = 'channels'
    paper = 'CCNet (Huang et al., ICCV 2019)'
    complexity = 'O(N sqrt(N))'

    def __init__(self, channels: int):
        super().__init__()
        if channels < 8:
            raise ValueError(f'CrissCrossAttention: channels must be >= 8 (query/key width is '
                             f'channels // 8), got {channels}')
        self.channels = channels
        self.query_conv = nn.Conv2d(channels, channels // 8, 1)
        self.key_conv = nn.Conv2d(channels, channels // 8, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = Scale(0.0)

    @property
    def in_channels(self) -> int:  # mmcv's attribute name
        return self.channels

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
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
        return self.gamma(out) + x
