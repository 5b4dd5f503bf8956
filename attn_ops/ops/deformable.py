"""Deformable attention (Xia et al., "Vision Transformer with Deformable Attention", CVPR 2022,
arXiv:2201.00520; DAT++, arXiv:2309.01430).

Every query attends to the same set of keys and values, sampled from the map at a grid of
reference points moved by offsets that a light convolutional network predicts from the queries.
Positions are normalised to [-1, 1] with -1 and +1 at the centres of the first and last pixels
(``F.grid_sample(..., align_corners=True)``, as DAT samples).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import MAP
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import build_norm, float32_math, upcast
from .window import attend_biased, default_heads


def reference_points(h: int, w: int, dtype: torch.dtype, device=None) -> Tensor:
    """(h, w, 2) normalised (y, x) of an h x w grid spread from -1 (top, left) to +1 (bottom, right);
    a grid of one row (column) sits at 0."""
    def axis(n: int) -> Tensor:
        return torch.linspace(-1, 1, n, dtype=dtype, device=device) if n > 1 else torch.zeros(1, dtype=dtype,
                                                                                            device=device)
    return torch.stack(torch.meshgrid(axis(h), axis(w), indexing='ij'), dim=-1)


def bilinear_splat(pos: Tensor, hw: Sequence[int]) -> Tensor:
    """(M, S, 2) normalised (y, x) sample positions -> (M, S, N): the weight of each pixel in each
    bilinear sample (``grid_sample(..., align_corners=True)``, zeros beyond the map)."""
    h, w = hw
    y = (pos[..., 0] + 1) / 2 * (h - 1)
    x = (pos[..., 1] + 1) / 2 * (w - 1)
    y0, x0 = y.floor(), x.floor()
    out = pos.new_zeros(*pos.shape[:-1], h * w)
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            weight = (1 - (y - yy).abs()) * (1 - (x - xx).abs())
            inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
            index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()
            out.scatter_add_(-1, index[..., None], (weight * inside)[..., None])
    return out


@ATTENTION.register_module()
class DeformableAttention(AttentionOp):
    r"""Deformable multi-head attention (DAT, Sec. 3.2-3.3).

    Reference points p form a grid of H/r x W/r over the map; a depthwise convolution (stride r)
    -> norm -> GELU -> 1x1 convolution on the queries predicts offsets per group of channels,
    bounded by tanh; keys and values are projected from the map sampled bilinearly at p + offset;
    every query attends to all samples, with a relative position bias read bilinearly from a table
    at the query-to-sample displacement:

    .. math::
        \tilde x = \phi\big(x;\ p + s\tanh(\theta_{\text{offset}}(q))\big),\qquad
        z^{(m)} = \mathrm{softmax}_{\text{samples}}\Big(\frac{q^{(m)} \tilde k^{(m)\top}}{\sqrt{d}}
        + \phi(\hat B; R)\Big)\tilde v^{(m)}

    softmax over the H/r x W/r sampled keys; :math:`\phi` bilinear sampling, ``R`` the normalised
    displacements between queries and samples, the offset in normalised units
    ``s tanh(o) / (H/r - 1)`` (at most s/2 reference cells, as DAT's code; none along an axis of one
    pixel).

    Args:
        dim: channels C. num_heads: heads (None: DAT's head width of 32, dim // 32).
        num_groups: offset groups, each with its own offsets for C / groups channels (None: heads // 4,
            DAT-T's 3 groups of 12 heads). stride: r, the reference grid's downsampling (DAT-T: 1).
        offset_range_factor: s (DAT-T: 2). offset_kernel: the depthwise kernel, odd (DAT's stage 3: 5).
        use_pe: the relative position bias (DAT-T: True). bias_size: S, the map size of the bias
            table (2S - 1, 2S - 1) per head (DAT-T's stage 3 at 224 px: 14); displacements are
            normalised, so any map reads the same table. norm_cfg: the offset network's norm over
            channels at each position (DAT: LN, the default; a head hands its own, e.g. SyncBN).
        attn_drop, proj_drop: dropout rates.

    Reference points follow the paper: the grid spread so that -1 and +1 are the corner pixels,
    so with zero offsets and stride 1 the keys are exactly the pixels. Initialisation: bias table
    ~ trunc_normal(std=0.01) as DAT; convolutions PyTorch's default.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns (B, heads, N, N)
    (``local`` form): the weights over the samples before dropout splatted bilinearly onto the
    pixels they were sampled from (a sample's channels come from each offset group's own position:
    the splats of the groups are averaged), so that with one group the value term of the output is
    exactly ``W_v (A x) + b_v``; a row sums to one less the weight of samples that fell beyond the
    map; :meth:`dense_attention` returns them unchanged. Cost O(N^2 C / r^2).

    Catalogue: differs: its reference points (and the query positions of the bias) are
    (j + 0.5) / W_r * 2 - 1, a half-pixel grid, while it samples with align_corners=True, so with
    zero offsets at stride 1 the keys fall between pixels (squeezed towards the centre by up to half
    a pixel) and the bias reads the table between entries; its bias table is fixed to the construction size
    (another map size fails); we follow the paper (equal to the catalogue given our reference grid,
    offset scale s / (W_r - 1) and map size)
    """

    layout = MAP
    attn_form = 'local'
    paper = 'DAT (Xia et al., CVPR 2022)'
    complexity = 'O(N^2 / r^2)'

    def __init__(self, dim: int, num_heads: Optional[int] = None, num_groups: Optional[int] = None, stride: int = 1,
                 offset_range_factor: float = 2.0, offset_kernel: int = 5, *, use_pe: bool = True, bias_size: int = 14,
                 norm_cfg: Optional[dict] = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        heads = default_heads('DeformableAttention', dim, num_heads)
        groups = max(heads // 4, 1) if num_groups is None else num_groups
        if groups < 1 or heads % groups:
            raise ValueError(f'DeformableAttention: num_heads={heads} is not divisible by num_groups={groups}')
        if stride < 1 or offset_kernel < 1 or offset_kernel % 2 == 0:
            raise ValueError(f'DeformableAttention: expected stride >= 1 and an odd offset_kernel, '
                             f'got stride={stride}, offset_kernel={offset_kernel}')
        if offset_range_factor <= 0 or bias_size < 1:
            raise ValueError(f'DeformableAttention: expected offset_range_factor > 0 and bias_size >= 1, '
                             f'got offset_range_factor={offset_range_factor}, bias_size={bias_size}')
        self.dim, self.num_heads, self.num_groups, self.stride = dim, heads, groups, stride
        self.offset_range_factor, self.offset_kernel, self.bias_size = offset_range_factor, offset_kernel, bias_size
        self.attn_drop = attn_drop
        cg = dim // groups
        self.proj_q = nn.Conv2d(dim, dim, 1)
        self.proj_k = nn.Conv2d(dim, dim, 1)
        self.proj_v = nn.Conv2d(dim, dim, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.proj_drop = nn.Dropout(proj_drop)
        self.offset_conv = nn.Conv2d(cg, cg, offset_kernel, stride, offset_kernel // 2, groups=cg)
        self.offset_norm = build_norm(norm_cfg or dict(type='LN'), cg, 'tokens')
        self.offset_proj = nn.Conv2d(cg, 2, 1, bias=False)
        if use_pe:
            self.rpe_table = nn.Parameter(torch.zeros(heads, 2 * bias_size - 1, 2 * bias_size - 1))
            nn.init.trunc_normal_(self.rpe_table, std=0.01)
        else:
            self.rpe_table = None

    def sample_positions(self, q: Tensor) -> Tensor:
        """Queries (B, C, H, W) -> (B * groups, H/r, W/r, 2) normalised (y, x) sample positions."""
        b, c, h, w = q.shape
        g = self.num_groups
        o = self.offset_conv(q.reshape(b * g, c // g, h, w))
        hk, wk = o.shape[2:]
        rows = o.permute(0, 2, 3, 1).reshape(-1, o.shape[1])
        o = self.offset_norm(rows).view(b * g, hk, wk, -1).permute(0, 3, 1, 2)
        o = self.offset_proj(F.gelu(o))                                            # (B g, 2, Hk, Wk)
        with float32_math(q):
            o = upcast(o).permute(0, 2, 3, 1).tanh()       # an axis of one pixel has nowhere to move
            scale = o.new_tensor([float(h > 1) / max(hk - 1, 1), float(w > 1) / max(wk - 1, 1)])
            scale = scale * self.offset_range_factor
            return reference_points(hk, wk, o.dtype, o.device) + o * scale

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        g, heads, d = self.num_groups, self.num_heads, c // self.num_heads
        q = self.proj_q(x)
        pos = self.sample_positions(q)                                            # (B g, Hk, Wk, 2)
        hk, wk = pos.shape[1:3]
        with float32_math(x):
            sampled = F.grid_sample(upcast(x).reshape(b * g, c // g, h, w), pos.flip(-1), mode='bilinear',
                                    align_corners=True)                           # (B g, C/g, Hk, Wk)
        sampled = sampled.to(x.dtype).reshape(b, c, hk, wk)
        k = self.proj_k(sampled).reshape(b, heads, d, hk * wk).transpose(-2, -1)   # (B, h, S, d)
        v = self.proj_v(sampled).reshape(b, heads, d, hk * wk).transpose(-2, -1)
        qh = q.reshape(b, heads, d, h * w).transpose(-2, -1)                       # (B, h, N, d)
        bias = self.position_bias(pos, (h, w)) if self.rpe_table is not None else None
        out = attend_biased(qh, k, v, bias, self.attn_drop if self.training else 0.0, return_attn)
        out, weights = out if return_attn else (out, None)
        y = self.proj_drop(self.proj_out(out.transpose(-2, -1).reshape(b, c, h, w)))
        if not return_attn:
            return y
        with float32_math(x):     # a sample's channels come from every group's own position: the mean
            splat = bilinear_splat(pos.reshape(b, g, -1, 2), (h, w)).mean(dim=1)   # (B, S, N)
            dense = upcast(weights) @ splat[:, None]
        return y, dense.to(weights.dtype)

    def position_bias(self, pos: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, heads, N, S): the table read bilinearly at (query - sample) / 2, both normalised."""
        bg, hk, wk, _ = pos.shape
        g = self.num_groups
        with float32_math(pos):
            queries = reference_points(hw[0], hw[1], pos.dtype, pos.device).view(1, -1, 1, 2)
            disp = (queries - pos.view(bg, 1, hk * wk, 2)) * 0.5                     # (B g, N, S, 2)
            table = upcast(self.rpe_table).view(1, g, -1, *self.rpe_table.shape[1:])
            table = table.expand(bg // g, -1, -1, -1, -1).reshape(bg, -1, *self.rpe_table.shape[1:])
            bias = F.grid_sample(table, disp.flip(-1), mode='bilinear', align_corners=True)  # (B g, h/g, N, S)
        return bias.reshape(bg // g, self.num_heads, *bias.shape[2:])

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """The splatted weights of ``return_attn=True`` are already (B, heads, N, N): returned as they are."""
        n = int(hw[0]) * int(hw[1])
        if weights.dim() != 4 or weights.shape[-2:] != (n, n):
            raise ValueError(f'DeformableAttention.dense_attention: expected weights (B, heads, {n}, {n}) for '
                             f'a {hw[0]}x{hw[1]} map, got {tuple(weights.shape)}')
        return weights
