"""Outlook attention (Yuan et al., "VOLO: Vision Outlooker for Visual Recognition", TPAMI 2022,
arXiv:2106.13112)."""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import MAP
from ..registry import ATTENTION
from .base import AttentionOp


@ATTENTION.register_module()
class OutlookAttention(AttentionOp):
    r"""Outlook attention on maps (VOLO, Eq. 2-5).

    For every window centre (one per ``stride`` x ``stride`` cell, H' = ceil(H / stride)), a
    linear layer on the average-pooled centre feature predicts a K^2 x K^2 weight per head;
    values in the K x K window are aggregated and folded back (overlapping windows summed):

    .. math::
        A_{i} = \mathrm{softmax}_{\text{last}}\big(\mathrm{reshape}(W_A\,\bar x_i) / \sqrt{d_h}\big)
        \in\mathbb{R}^{K^2\times K^2},\qquad
        Y = \mathrm{proj}\Big(\mathrm{fold}\big(A_i\,V_{\Delta_i}\big)\Big)

    Softmax over the last axis (the K^2 source positions of the window), scale ``head_dim**-0.5``.

    Args:
        dim: channels C (divisible by ``num_heads``).
        num_heads, kernel_size, padding, stride: as VOLO (``padding`` must be ``kernel_size // 2``
            so that windows and pooled centres line up for any stride).
        qkv_bias: bias of the value projection. attn_drop, proj_drop: dropout rates.

    Shapes: (B, C, H, W) -> (B, C, H, W) for any stride. Cost O(N K^4 / stride^2 + N K^2 C).
    """

    layout = MAP
    paper = 'VOLO (Yuan et al., TPAMI 2022)'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_heads: int = 1, kernel_size: int = 3, padding: int = 1,
                 stride: int = 1, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'OutlookAttention: dim={dim} is not divisible by num_heads={num_heads}')
        if kernel_size % 2 == 0 or padding != kernel_size // 2:
            raise ValueError(f'OutlookAttention: expected an odd kernel_size with padding=kernel_size//2, '
                             f'got kernel_size={kernel_size}, padding={padding}')
        if stride < 1:
            raise ValueError(f'OutlookAttention: stride must be >= 1, got {stride}')
        self.dim, self.num_heads = dim, num_heads
        self.kernel_size, self.padding, self.stride = kernel_size, padding, stride
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn = nn.Linear(dim, kernel_size ** 4 * num_heads)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        b, c, h, w = x.shape
        k2, heads = self.kernel_size ** 2, self.num_heads
        hp, wp = math.ceil(h / self.stride), math.ceil(w / self.stride)
        v = self.v(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)                  # (B, C, H, W)
        v = F.unfold(v, self.kernel_size, padding=self.padding, stride=self.stride)
        v = v.view(b, heads, self.head_dim, k2, hp * wp).permute(0, 1, 4, 3, 2)  # (B, h, L, K2, d)
        centre = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True) if self.stride > 1 else x
        attn = self.attn(centre.permute(0, 2, 3, 1))                              # (B, H', W', h K2 K2)
        attn = attn.view(b, hp * wp, heads, k2, k2).transpose(1, 2)              # (B, h, L, K2, K2)
        attn = self.attn_drop((attn * self.scale).softmax(dim=-1))
        out = (attn @ v).permute(0, 1, 4, 3, 2).reshape(b, c * k2, hp * wp)
        out = F.fold(out, (h, w), self.kernel_size, padding=self.padding, stride=self.stride)
        out = self.proj_drop(self.proj(out.permute(0, 2, 3, 1)))
        return out.permute(0, 3, 1, 2)
