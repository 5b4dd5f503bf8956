"""Token mixers on maps: a convolution-transformer block, a permute-MLP and a global frequency filter.

* MobileViT: Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly
  Vision Transformer", ICLR 2022, arXiv:2110.02178 (structure as Apple's ml-cvnets).
* Vision Permutator: Hou et al., "Vision Permutator: A Permutable MLP-Like Architecture for
  Visual Recognition", TPAMI 2022, arXiv:2106.12368.
* GFNet: Rao et al., "Global Filter Networks for Image Classification", NeurIPS 2021,
  arXiv:2107.00645.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import MAP
from ..registry import ATTENTION
from .base import AttentionOp
from .dot_product import attend, merge_heads, split_heads
from .layers import build_norm, float32_math, upcast


# ----------------------------------------------------------------------------- MobileViT
class _TransformerLayer(nn.Module):
    """Pre-norm transformer layer: z + MHA(LN(z)), then z + FFN(LN(z)) with SiLU (MobileViT's).

    ``forward(z, key_mask)``: z (B, N, d), key_mask (B, N) bool or None -> (B, N, d).
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, qkv_bias: bool, attn_drop: float, drop: float):
        super().__init__()
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, z: Tensor, key_mask: Optional[Tensor]) -> Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(self.norm1(z)).chunk(3, dim=-1))
        z = z + self.drop(self.proj(merge_heads(attend(q, k, v, key_mask, self.attn_drop if self.training else 0.0))))
        return z + self.drop(self.fc2(self.drop(F.silu(self.fc1(self.norm2(z))))))


def _conv_norm_act(c_in: int, c_out: int, kernel_size: int, norm_cfg: Optional[dict]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
                         build_norm(norm_cfg, c_out, MAP), nn.SiLU())


@ATTENTION.register_module()
class MobileViTAttention(AttentionOp):
    r"""The MobileViT block (MobileViT, Sec. 3.1, Fig. 1b): local convolutions, a transformer over
    the pixels at the same position of every p x p patch, fusion with the input.

    .. math::
        L = \mathrm{conv}_{1\times1}\big(\mathrm{CBS}_{n\times n}(X)\big),\quad
        G_p = \mathrm{LN}\big(\mathrm{Transformer}^{\times L}(L_p)\big)\ \ \forall p \in \{1..P\},\quad
        Y = \mathrm{CBS}_{n\times n}\big[X \Vert \mathrm{CBS}_{1\times1}(\mathrm{Fold}(G))\big]

    ``CBS`` is conv + norm + SiLU. ``L`` (d channels) is unfolded into P = p^2 sequences
    ``L_p`` of the N / P pixels that sit at position p of their patch; each transformer layer is
    pre-norm multi-head attention (softmax over the N / P patches, scale 1/sqrt(d_h)) and a
    pre-norm FFN d -> mlp_ratio d -> d with SiLU, both residual; a final LayerNorm; folded back.
    Maps whose sides are not multiples of p are zero-padded and the padded pixels masked out of
    the attention (real pixels' outputs equal those of an unpadded map; ml-cvnets resizes
    instead), then cropped. Structure and defaults as ml-cvnets' ``MobileViTBlock``; PyTorch's
    default initialisation.

    Args:
        dim: channels C of the map.
        depth: L, transformer layers (MobileViT-S: 2, 4, 3 over its stages).
        patch_size: p (paper 2).
        kernel_size: n of the local and fusion convolutions (paper 3, odd).
        num_heads: attention heads (ml-cvnets' MobileViT: 4).
        mlp_ratio: FFN width over d (MobileViT: 2).
        transformer_dim: d (default 1.5 C rounded up to a multiple of ``num_heads``, the ratio of
            MobileViT-S / XS).
        qkv_bias: bias of the attention's qkv projection (ml-cvnets: True).
        norm_cfg: norm of the three CBS convolutions (default BN; heads hand theirs).
        attn_drop, drop: dropout on the attention weights and on the residual branches.

    Shapes: (B, C, H, W) -> (B, C, H, W), any H x W. A ``block``: the output is a fusion of the
    input and the global features (no residual added around it). Forms no single attention map
    (L layers of P maps). Cost O(N^2 d / P).

    Catalogue: differs: ``MobileViTAttention`` has no norm or activation after its convolutions,
    no LayerNorm after the transformer and no qkv bias (the official block has all of them),
    hard-codes depth 3, 8 heads of 64 channels and an FFN of 1024, and fails on maps whose sides
    are not multiples of the patch size; we follow ml-cvnets (equal to the catalogue with those
    layers added)
    """

    layout = MAP
    kind = 'block'
    paper = 'MobileViT (Mehta & Rastegari, ICLR 2022)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, depth: int = 2, patch_size: int = 2, kernel_size: int = 3, num_heads: int = 4,
                 mlp_ratio: float = 2.0, *, transformer_dim: Optional[int] = None, qkv_bias: bool = True,
                 norm_cfg: Optional[dict] = None, attn_drop: float = 0.0, drop: float = 0.0):
        super().__init__()
        d = transformer_dim or num_heads * math.ceil(1.5 * dim / num_heads)
        if num_heads < 1 or d % num_heads:
            raise ValueError(f'MobileViTAttention: transformer_dim={d} is not divisible by num_heads={num_heads}')
        if kernel_size % 2 == 0 or patch_size < 1 or depth < 1:
            raise ValueError(f'MobileViTAttention: expected an odd kernel_size, patch_size >= 1 and depth >= 1, '
                             f'got kernel_size={kernel_size}, patch_size={patch_size}, depth={depth}')
        self.dim, self.transformer_dim, self.depth, self.num_heads = dim, d, depth, num_heads
        self.patch_size, self.kernel_size = patch_size, kernel_size
        self.ffn_dim = int(d * mlp_ratio)
        self.local = nn.Sequential(_conv_norm_act(dim, dim, kernel_size, norm_cfg), nn.Conv2d(dim, d, 1, bias=False))
        self.layers = nn.ModuleList(_TransformerLayer(d, num_heads, self.ffn_dim, qkv_bias, attn_drop, drop)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(d)
        self.conv_proj = _conv_norm_act(d, dim, 1, norm_cfg)
        self.fusion = _conv_norm_act(2 * dim, dim, kernel_size, norm_cfg)

    def unfold(self, y: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """(B, d, H, W) -> (B*P, N/P, d) sequences (pixel p of every patch) and their key mask
        (None when no padding was needed)."""
        b, d, h, w = y.shape
        p = self.patch_size
        hp, wp = math.ceil(h / p) * p, math.ceil(w / p) * p
        y = F.pad(y, (0, wp - w, 0, hp - h))
        seq = y.view(b, d, hp // p, p, wp // p, p).permute(0, 3, 5, 2, 4, 1).reshape(b * p * p, -1, d)
        if (hp, wp) == (h, w):
            return seq, None
        real = torch.zeros(hp, wp, dtype=torch.bool, device=y.device)
        real[:h, :w] = True
        real = real.view(hp // p, p, wp // p, p).permute(1, 3, 0, 2).reshape(p * p, -1)
        return seq, real.repeat(b, 1)

    def fold(self, seq: Tensor, hw) -> Tensor:
        """Inverse of :meth:`unfold`: (B*P, N/P, d) -> (B, d, H, W), padding cropped."""
        h, w = hw
        p = self.patch_size
        nh, nw = math.ceil(h / p), math.ceil(w / p)
        d = seq.shape[-1]
        y = seq.view(-1, p, p, nh, nw, d).permute(0, 5, 3, 1, 4, 2).reshape(-1, d, nh * p, nw * p)
        return y[:, :, :h, :w]

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        seq, key_mask = self.unfold(self.local(x))
        for layer in self.layers:
            seq = layer(seq, key_mask)
        y = self.conv_proj(self.fold(self.norm(seq), x.shape[2:]))
        return self.fusion(torch.cat([x, y], dim=1))


# ----------------------------------------------------------------------------- ViP
@ATTENTION.register_module()
class WeightedPermuteMLP(AttentionOp):
    r"""Weighted Permute-MLP (Vision Permutator, Sec. 3.2), maps.

    .. math::
        X_H = \mathrm{P}_H^{-1}\big(\mathrm{P}_H(X) W_H\big),\quad
        X_W = \mathrm{P}_W^{-1}\big(\mathrm{P}_W(X) W_W\big),\quad X_C = X W_C,\qquad
        Y = \big(a_H \odot X_H + a_W \odot X_W + a_C \odot X_C\big) W_p

    with :math:`a = \mathrm{softmax}_{\{H, W, C\}}\big(\mathrm{MLP}(\mathrm{mean}_{HW}(X_H + X_W + X_C))\big)`
    one weight per channel and branch (softmax over the three branches). The channels are split
    into S = ``segment_dim`` segments of C / S channels; ``P_H`` swaps the height axis with the
    segment channels, so the linear ``W_H`` (C x C) mixes the S rows of a column jointly with
    their C / S channels (``P_W`` likewise along the width). ViP therefore defines the op on an
    S x S grid; other sizes are zero-padded to multiples of S and split into S x S windows, each
    permuted and mixed on its own, then cropped (an S x S map is exactly ViP). The
    re-weighting MLP is C -> C/4 -> 3C with GELU; the mean runs over the real H x W pixels.
    Initialisation: PyTorch's default (ViP uses truncated normal std 0.02 in its models).

    Args:
        dim: channels C (divisible by ``segment_dim``; at least 4).
        segment_dim: S, the number of segments and the window side (ViP-S/14: 16; catalogue 8).
        qkv_bias: biases of ``W_H``, ``W_W``, ``W_C`` (ViP: False). proj_drop: dropout on the output.

    Shapes: (B, C, H, W) -> (B, C, H, W), any H x W. Forms no attention map. Cost O(N S C).

    Catalogue: equal (``WeightedPermuteMLP`` on S x S maps in channels-last; it orders the three
    re-weighting outputs C, W, H where ViP orders them H, W, C, permuted when copying weights, and
    adds dropout 0.1 inside the re-weighting MLP, which ViP does not: equal in eval)
    """

    layout = MAP
    paper = 'Vision Permutator (Hou et al., TPAMI 2022)'
    complexity = 'O(N)'

    def __init__(self, dim: int, segment_dim: int = 8, *, qkv_bias: bool = False, proj_drop: float = 0.0):
        super().__init__()
        if segment_dim < 1 or dim % segment_dim or dim < 4:
            raise ValueError(f'WeightedPermuteMLP: dim={dim} must be divisible by segment_dim={segment_dim} '
                             '(channels split into segments) and at least 4')
        self.dim, self.segment_dim = dim, segment_dim
        self.mlp_c = nn.Linear(dim, dim, bias=qkv_bias)
        self.mlp_h = nn.Linear(dim, dim, bias=qkv_bias)
        self.mlp_w = nn.Linear(dim, dim, bias=qkv_bias)
        self.reweight = nn.Sequential(nn.Linear(dim, dim // 4), nn.GELU(), nn.Linear(dim // 4, 3 * dim))
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _permute_mix(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, H, W, C) -> the height- and width-mixed maps, windowed over S x S (zero-padded)."""
        b, h, w, c = x.shape
        s = self.segment_dim
        nh, nw = math.ceil(h / s), math.ceil(w / s)
        t = F.pad(x, (0, 0, 0, nw * s - w, 0, nh * s - h))
        t = t.view(b, nh, s, nw, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s, s, s, c // s)  # (T, H, W, seg, S)
        mixed_h = self.mlp_h(t.permute(0, 3, 2, 1, 4).reshape(-1, s, s, c))                    # (T, seg, W, H*S)
        mixed_h = mixed_h.view(-1, s, s, s, c // s).permute(0, 3, 2, 1, 4)
        mixed_w = self.mlp_w(t.permute(0, 1, 3, 2, 4).reshape(-1, s, s, c))                    # (T, H, seg, W*S)
        mixed_w = mixed_w.view(-1, s, s, s, c // s).permute(0, 1, 3, 2, 4)

        def untile(m: Tensor) -> Tensor:
            m = m.reshape(b, nh, nw, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * s, nw * s, c)
            return m[:, :h, :w]
        return untile(mixed_h), untile(mixed_w)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c = x.shape[:2]
        t = x.permute(0, 2, 3, 1)                                                          # (B, H, W, C)
        h, w = self._permute_mix(t)
        cm = self.mlp_c(t)
        a = self.reweight((h + w + cm).mean(dim=(1, 2))).view(b, c, 3).softmax(dim=-1)    # (B, C, 3)
        y = h * a[:, None, None, :, 0] + w * a[:, None, None, :, 1] + cm * a[:, None, None, :, 2]
        return self.proj_drop(self.proj(y)).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- GFNet
@ATTENTION.register_module()
class GlobalFilter(AttentionOp):
    r"""Global filter layer (GFNet, Eq. 4-6), maps: a learnable filter in the 2D frequency domain.

    .. math::
        Y = \mathcal{F}^{-1}\big[K \odot \mathcal{F}[X]\big]

    :math:`\mathcal{F}` is the real 2D FFT over (H, W) with orthonormal scaling (``rfft2``,
    ``norm='ortho'``), so :math:`\mathcal{F}[X]` has H x (W // 2 + 1) frequencies per channel;
    ``K`` is complex, one filter per channel (depth-wise), initialised N(0, 0.02^2) for its real and
    imaginary parts as GFNet. The filter is defined at a reference size ``h x w`` (= H x (W // 2 + 1)
    of the reference map, GFNet's 14 x 8 for 14 x 14 tokens); other sizes resize it by bicubic
    interpolation of its real and imaginary parts (corners aligned: the zero and the highest
    frequencies stay in place), the rule DFFormer's ``resize_complex_weight`` applies to GFNet-style
    filters. Computed in float32 (float64 after ``.double()``), returned in the input's dtype.

    Args:
        dim: channels C.
        h, w: reference filter size (frequencies along H, and W // 2 + 1 along W).

    Shapes: (B, C, H, W) -> (B, C, H, W), any H x W. Forms no attention map. Cost O(N log N C)
    (FFTs, which the op table's FLOP counter does not count).

    Catalogue: equal (``GlobalFilter`` on tokens at the reference size; it infers a square grid
    from N unless given ``spatial_size`` and fails at any other size, where ours resizes the filter)
    """

    layout = MAP
    paper = 'GFNet (Rao et al., NeurIPS 2021)'
    complexity = 'O(N log N)'

    def __init__(self, dim: int, h: int = 14, w: int = 8):
        super().__init__()
        if h < 1 or w < 1:
            raise ValueError(f'GlobalFilter: the reference filter size must be >= 1, got h={h}, w={w}')
        self.dim, self.h, self.w = dim, h, w
        self.complex_weight = nn.Parameter(torch.randn(h, w, dim, 2) * 0.02)

    def filter(self, height: int, width: int) -> Tensor:
        """K for an H x W map: complex (C, H, W // 2 + 1), resized from the reference when needed."""
        weight = upcast(self.complex_weight).permute(2, 3, 0, 1)                   # (C, 2, h, w)
        size = (height, width // 2 + 1)
        if size != (self.h, self.w):
            weight = F.interpolate(weight.reshape(1, -1, self.h, self.w), size=size, mode='bicubic',
                                   align_corners=True).view(self.dim, 2, *size)
        return torch.view_as_complex(weight.permute(0, 2, 3, 1).contiguous())

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        height, width = x.shape[2:]
        with float32_math(x):
            spectrum = torch.fft.rfft2(upcast(x), dim=(2, 3), norm='ortho')
            y = torch.fft.irfft2(spectrum * self.filter(height, width), s=(height, width), dim=(2, 3), norm='ortho')
        return y.to(x.dtype)
