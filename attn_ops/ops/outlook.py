"""Outlook attention (Yuan et al., "VOLO: Vision Outlooker for Visual Recognition", TPAMI 2022,
arXiv:2106.13112)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
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

    Shapes: (B, C, H, W) -> (B, C, H, W) for any stride. ``return_attn=True`` also returns the
    window weights (B, heads, L, K^2, K^2) before dropout (``local`` form: L = H' W' windows,
    [target, source] positions of the K x K window, row-major; each row sums to one over the
    sources); :meth:`dense_attention` scatters them to (B, heads, N, N), whose row t sums to the
    number of windows covering pixel t. Cost O(N K^4 / stride^2 + N K^2 C).

    Catalogue: differs: it builds ``nn.Unfold(kernel_size, padding, stride)``, which torch reads
    as (kernel, dilation, padding), so every stride > 1 fails; we follow VOLO (equal for stride 1,
    and for any stride with that line fixed)
    """

    layout = MAP
    attn_form = 'local'
    paper = 'VOLO (Yuan et al., TPAMI 2022)'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_heads: int = 1, kernel_size: int = 3, padding: int = 1,
                 stride: int = 1, *, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0):
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

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        k2, heads = self.kernel_size ** 2, self.num_heads
        hp, wp = math.ceil(h / self.stride), math.ceil(w / self.stride)
        v = self.v(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)                  # (B, C, H, W)
        v = F.unfold(v, self.kernel_size, padding=self.padding, stride=self.stride)
        v = v.view(b, heads, self.head_dim, k2, hp * wp).permute(0, 1, 4, 3, 2)  # (B, h, L, K2, d)
        centre = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True) if self.stride > 1 else x
        attn = self.attn(centre.permute(0, 2, 3, 1))                              # (B, H', W', h K2 K2)
        attn = attn.view(b, hp * wp, heads, k2, k2).transpose(1, 2)              # (B, h, L, K2, K2)
        weights = (attn * self.scale).softmax(dim=-1)
        out = (self.attn_drop(weights) @ v).permute(0, 1, 4, 3, 2).reshape(b, c * k2, hp * wp)
        out = F.fold(out, (h, w), self.kernel_size, padding=self.padding, stride=self.stride)
        out = self.proj_drop(self.proj(out.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return (out, weights) if return_attn else out

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, heads, L, K^2, K^2) window weights -> (B, heads, N, N) over the H x W pixels: the
        weight of the value at pixel s in the (pre-projection) output at pixel t, windows summed."""
        h, w = int(hw[0]), int(hw[1])
        n, k, k2 = h * w, self.kernel_size, self.kernel_size ** 2
        pix = torch.arange(1, n + 1, device=weights.device, dtype=torch.float64).view(1, 1, h, w)
        win = F.unfold(pix, k, padding=self.padding, stride=self.stride)[0].T.long() - 1  # (L, K2), -1 = pad
        if win.shape[0] != weights.shape[2]:
            raise ValueError(f'OutlookAttention.dense_attention: weights hold {weights.shape[2]} windows, '
                             f'a {h}x{w} map with stride {self.stride} has {win.shape[0]}')
        tgt, src = win[:, :, None].expand(-1, k2, k2), win[:, None, :].expand(-1, k2, k2)
        valid = (tgt >= 0) & (src >= 0)
        dense = weights.new_zeros(*weights.shape[:2], n * n)
        dense.index_add_(2, (tgt * n + src)[valid], weights[..., valid])
        return dense.view(*weights.shape[:2], n, n)
