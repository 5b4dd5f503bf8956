"""The non-local family on maps: every position (or channel) gathers context from the whole map or a
learned neighbourhood of it.

* DANet position and channel attention and their dual head (Fu et al., "Dual Attention Network for
  Scene Segmentation", CVPR 2019, arXiv:1809.02983);
* double attention, gather then distribute (Chen et al., "A^2-Nets: Double Attention Networks",
  NeurIPS 2018, arXiv:1810.11579);
* contextual transformer attention (Li et al., "Contextual Transformer Networks for Visual
  Recognition", TPAMI 2022, arXiv:2107.12292);
* ACmix, self-attention and convolution on shared projections (Pan et al., "On the Integration of
  Self-Attention and Convolution", CVPR 2022, arXiv:2111.14556).
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import MAP
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import Scale, build_norm, float32_math, upcast


def _conv_norm_relu(dim: int, kernel_size: int, norm_cfg: Optional[dict], groups: int = 1) -> nn.Sequential:
    """conv C -> C (no bias, 'same' padding) -> norm -> ReLU."""
    return nn.Sequential(nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups, bias=False),
                         build_norm(norm_cfg, dim, MAP), nn.ReLU(inplace=True))


def _kaiming_fan_out_(module: nn.Module) -> None:
    """Convolutions N(0, 2 / fan_out) with zero bias, norms at identity (timm / mmcv ResNet init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _window_offsets(kernel_size: int, device) -> tuple[Tensor, Tensor]:
    """Row and column offsets of the K^2 positions of a K x K window, row-major, centred."""
    k = torch.arange(kernel_size, device=device) - kernel_size // 2
    return k.repeat_interleave(kernel_size), k.repeat(kernel_size)


def _scatter_windows(weights: Tensor, src: Tensor, valid: Tensor, n: int) -> Tensor:
    """(B, h, K^2, N) window weights -> (B, h, N, N): ``dense[t, src[k, t]] += weights[k, t]``
    for the ``valid`` (K^2, N) entries; a source hit twice (reflected windows) sums."""
    k2 = weights.shape[2]
    tgt = torch.arange(n, device=weights.device).expand(k2, n)
    dense = weights.new_zeros(*weights.shape[:2], n * n)
    dense.index_add_(2, (tgt * n + src)[valid], weights[:, :, valid])
    return dense.view(*weights.shape[:2], n, n)


def _reflect_index(n: int, pad: int, device) -> Tensor:
    """Indices of a length-``n`` axis reflect-padded by ``pad`` on both sides (without repeating
    the edge, as ``ReflectionPad2d``), folding back as often as needed so any ``pad`` works,
    ``n = 1`` included."""
    idx = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx < n, idx, period - idx)


def _window_views(t: Tensor, kernel_size: int, reflect: bool = False) -> Iterator[Tensor]:
    """(..., H, W) -> the K^2 views ``t[..., p + o]`` of one padded copy of ``t`` (zeros, or
    reflection that folds back on small maps), window offsets ``o`` row-major (``F.unfold``'s order).

    Local attention over these views keeps one padded map for backward where ``F.unfold`` keeps K^2
    copies: what autograd saves grows as (C + K^2) per position instead of C K^2. The views are
    made one at a time as the caller uses them, so backward reaches each view's gradient right
    after the product that made it instead of holding K^2 of them at once."""
    h, w = t.shape[-2:]
    pad = kernel_size // 2
    if reflect:
        t = t.index_select(-2, _reflect_index(h, pad, t.device)).index_select(-1, _reflect_index(w, pad, t.device))
    else:
        t = F.pad(t, (pad, pad, pad, pad))
    return (t[..., i:i + h, j:j + w] for i in range(kernel_size) for j in range(kernel_size))


def _window_sum(weights: Tensor, t: Tensor, kernel_size: int, reflect: bool = False) -> Tensor:
    """``sum_o weights[:, o] t[..., p + o]`` over the K^2 window offsets (:func:`_window_views`'s
    order): ``weights`` (B, K^2, *rest) with ``weights[:, o].unsqueeze(1)`` broadcasting against
    ``t`` (B, ..., H, W); returns ``t``'s shape."""
    out = None
    for o, t_o in enumerate(_window_views(t, kernel_size, reflect)):
        term = weights[:, o].unsqueeze(1) * t_o
        out = term if out is None else out + term
    return out


# ----------------------------------------------------------------------------- DANet
@ATTENTION.register_module()
class PositionAttention(AttentionOp):
    r"""DANet's position attention module (PAM, Sec. 3.2).

    .. math::
        A = \mathrm{softmax}_{j}\big(Q_i^\top K_j\big) \in \mathbb{R}^{N \times N},\qquad
        Y_i = \gamma \sum_j A_{ij} V_j + X_i

    over the N = H W positions: softmax over the keys j (last axis), no 1/sqrt(d) scaling (as the
    official code). ``Q``, ``K`` are 1x1 convolutions C -> C / ``reduction``, ``V`` a 1x1
    convolution C -> C (all with bias, PyTorch's default initialisation), ``gamma`` a learnable
    scalar starting at 0, so the block starts as the identity. Parameter names (``query_conv``,
    ``key_conv``, ``value_conv``, ``gamma.scale``) follow the official ``PAM_Module`` and mmseg's PAM.
    The fused path runs :func:`torch.nn.functional.scaled_dot_product_attention` with ``scale=1``
    on queries and keys zero-padded to C channels (its fused kernels need equal widths; without them
    it would keep the N x N weights), so no N x N matrix is kept.

    Args:
        dim: channels C (at least ``reduction``).
        reduction: query/key width C // ``reduction`` (official 8).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``A`` as (B, 1, N, N),
    N row-major over (H, W) (``dense`` form; rows sum to one over the keys). Cost O(N^2 C).

    Catalogue: differs: its ``PositionAttentionModule`` returns tokens (B, N, C) for a map input, has
    no residual and no learnable scale gamma (so it cannot start as the identity), scales the
    logits by 1/sqrt(C) with full-width queries, and wraps the attention in an extra 3x3 convolution
    and output projection; we follow DANet's PAM (equal to the catalogue's attention with its conv and
    projection set to the identity and its scaling removed, plus the residual)
    """

    layout = MAP
    kind = 'block'
    attn_form = 'dense'
    paper = 'DANet (Fu et al., CVPR 2019)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        if reduction < 1 or dim < reduction:
            raise ValueError(f'PositionAttention: need 1 <= reduction <= dim (query/key width is dim // reduction), '
                             f'got dim={dim}, reduction={reduction}')
        self.dim, self.reduction = dim, reduction
        self.query_conv = nn.Conv2d(dim, dim // reduction, 1)
        self.key_conv = nn.Conv2d(dim, dim // reduction, 1)
        self.value_conv = nn.Conv2d(dim, dim, 1)
        self.gamma = Scale(0.0)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        q, k, v = (conv(x).flatten(2).transpose(1, 2).unsqueeze(1).contiguous()
                   for conv in (self.query_conv, self.key_conv, self.value_conv))       # (B, 1, N, d)
        if return_attn:
            with float32_math(x):
                weights = (upcast(q) @ upcast(k).transpose(-2, -1)).softmax(dim=-1)
            weights = weights.to(v.dtype)
            out = weights @ v
        else:   # zero-padded to the value width, q.k unchanged: SDPA's fused kernels need equal widths
            pad = (0, v.shape[-1] - q.shape[-1])
            out = F.scaled_dot_product_attention(F.pad(q, pad), F.pad(k, pad), v, scale=1.0)
        out = self.gamma(out[:, 0].transpose(1, 2).reshape(b, c, h, w)) + x
        return (out, weights) if return_attn else out


@ATTENTION.register_module()
class ChannelAttention(AttentionOp):
    r"""DANet's channel attention module (CAM, Sec. 3.3), as the official code.

    .. math::
        E = X X^\top \in \mathbb{R}^{C \times C},\quad
        A = \mathrm{softmax}_{j}\big(\max_{j'} E_{ij'} - E_{ij}\big),\qquad
        Y = \gamma\, A X + X

    with X the (C, N) flattened map; softmax over the channels j (last axis). The official code
    (and mmseg) feed the softmax ``max - E``, which the authors kept for stable training; the
    paper's Eq. (3) prints ``softmax(E)``. No projections: the only parameter is ``gamma``, a
    learnable scalar starting at 0 (the block starts as the identity).

    The channel map mixes channels, not positions, so it has no token form: ``attn_form`` is
    ``None`` and :meth:`channel_weights` returns ``A`` as (B, 1, C, C) for analysis.

    Args:
        dim: channels C.

    Shapes: (B, C, H, W) -> (B, C, H, W). Cost O(N C^2).

    Catalogue: differs: its ``ChannelAttentionModule`` fixes H x W at construction (its output
    projection is a Linear over the H*W positions), so any other map size fails; it also takes the
    softmax of the scaled energy instead of DANet's ``max - energy``, wraps the attention in an extra
    3x3 convolution and that projection, and has no residual and no gamma; we follow the official CAM
    """

    layout = MAP
    kind = 'block'
    paper = 'DANet (Fu et al., CVPR 2019)'
    complexity = 'O(N)'

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.gamma = Scale(0.0)

    def check_input(self, x: Tensor, mask: Optional[Tensor] = None, return_attn: bool = False) -> None:
        if return_attn:
            raise ValueError(f"ChannelAttention forms no attention map over tokens (kind '{self.kind}'), so "
                             'return_attn=True is not available; its (B, 1, C, C) channel map comes from '
                             'op.channel_weights(x)')
        super().check_input(x, mask, return_attn)

    def channel_weights(self, x: Tensor) -> Tensor:
        """``A`` (B, 1, C, C) of the map ``x``: rows sum to one over the channels."""
        super().check_input(x)
        with float32_math(x):
            feats = upcast(x.flatten(2))
            energy = feats @ feats.transpose(1, 2)
            attn = (energy.amax(dim=-1, keepdim=True) - energy).softmax(dim=-1)
        return attn.to(x.dtype).unsqueeze(1)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        out = (self.channel_weights(x)[:, 0] @ x.flatten(2)).view_as(x)
        return self.gamma(out) + x


@ATTENTION.register_module()
class DualAttention(AttentionOp):
    r"""DANet's dual attention: position and channel attention in parallel, summed (Sec. 3.4, the
    official ``DANetHead`` and mmseg's ``DAHead`` before their classifiers).

    .. math::
        Y = \mathrm{conv}_p\big(\mathrm{PAM}(\mathrm{conv}'_p X)\big)
          + \mathrm{conv}_c\big(\mathrm{CAM}(\mathrm{conv}'_c X)\big)

    every conv a 3x3 convolution (no bias) + norm + ReLU at C channels, initialised N(0, 2 / fan_out)
    as mmcv's ``ConvModule``; :class:`PositionAttention` and :class:`ChannelAttention` start with
    gamma = 0. The output is new features (kind ``attention``); a head adds its own residual.

    Args:
        dim: channels C.
        reduction: PAM's query/key reduction (official 8).
        norm_cfg: norm of the four convolutions (``BN`` by default; ``SyncBN`` in the recipes).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the position branch's
    map (B, 1, N, N) (``dense`` form, rows sum to one); the channel map comes from
    ``op.cam.channel_weights(op.cam_in_conv(x))``. Cost O(N^2 C + N C^2 + 36 N C^2).

    Catalogue: differs: its ``DAModule`` ignores its ``d_model``, ``kernel_size``, ``H`` and ``W``
    arguments (it builds both branches for 512 channels and 7 x 7 maps), so e.g. ``DAModule(d_model=64,
    H=14, W=14)`` fails on a (2, 64, 14, 14) input, and it inherits both branches' defects (no
    learnable residual scales); we follow DANet's head
    """

    layout = MAP
    kind = 'attention'
    attn_form = 'dense'
    paper = 'DANet (Fu et al., CVPR 2019)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, reduction: int = 8, *, norm_cfg: Optional[dict] = None):
        super().__init__()
        self.dim = dim
        self.pam_in_conv = _conv_norm_relu(dim, 3, norm_cfg)
        self.pam = PositionAttention(dim, reduction)
        self.pam_out_conv = _conv_norm_relu(dim, 3, norm_cfg)
        self.cam_in_conv = _conv_norm_relu(dim, 3, norm_cfg)
        self.cam = ChannelAttention(dim)
        self.cam_out_conv = _conv_norm_relu(dim, 3, norm_cfg)
        for conv in (self.pam_in_conv, self.pam_out_conv, self.cam_in_conv, self.cam_out_conv):
            _kaiming_fan_out_(conv)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        pos = self.pam(self.pam_in_conv(x), return_attn=return_attn)
        pos, weights = pos if return_attn else (pos, None)
        out = self.pam_out_conv(pos) + self.cam_out_conv(self.cam(self.cam_in_conv(x)))
        return (out, weights) if return_attn else out


# ----------------------------------------------------------------------------- A^2-Nets
@ATTENTION.register_module()
class DoubleAttention(AttentionOp):
    r"""The double attention block of A^2-Nets (Sec. 3): gather, then distribute.

    .. math::
        G = A\,\mathrm{softmax}_{N}(B)^\top \in \mathbb{R}^{m \times n},\qquad
        Z = G\,\mathrm{softmax}_{n}(V) \in \mathbb{R}^{m \times N},\qquad
        Y = \mathrm{conv}_{1\times1}(Z)

    ``A`` (m channels), ``B`` and ``V`` (n channels each) are 1x1 convolutions of X over the N = H W
    positions. Each of the n gather maps is a softmax over the N positions (second-order attention
    pooling); each position's distribution vector is a softmax over the n gathered descriptors.
    The reconstructing 1x1 convolution maps m back to C channels; the output is the block's
    features (kind ``attention``: the paper adds them to the residual path). Convolutions
    initialised N(0, 2 / fan_out) with zero bias, as the catalogue.

    Args:
        dim: channels C.
        c_m: channels m of the gathered features (default ``dim // 4``, the ratio of the
            catalogue's example; the paper sets m and n per network).
        c_n: number n of gather maps and of distribution weights per position (default ``dim // 4``).
        reconstruct: end with the 1x1 convolution m -> C; without it ``c_m`` must equal ``dim``.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns (B, 2, n, N) (``local``
    form): ``[:, 0]`` the gather maps (each row sums to one over the N positions), ``[:, 1]`` the
    distribution weights (each column sums to one over n); :meth:`dense_attention` gives the
    (B, 1, N, N) weight of position j's features in position i's output, ``softmax_n(V)^T
    softmax_N(B)``, whose rows sum to one. Cost O(N C (m + n) + N m n).

    Catalogue: differs: both softmaxes are called without ``dim``, which torch resolves to dim 0 of
    the (B, n, N) tensors, the batch: each sample's output depends on the other samples of its batch
    (sample 0 alone vs in a batch of 4 differs by hundreds at ``DoubleAttention(64, 32, 32)``); we
    follow the paper (softmax over the positions, then over n; equal to the catalogue with those two
    axes given)
    """

    layout = MAP
    attn_form = 'local'
    paper = 'A^2-Nets (Chen et al., NeurIPS 2018)'
    complexity = 'O(N)'

    def __init__(self, dim: int, c_m: Optional[int] = None, c_n: Optional[int] = None, reconstruct: bool = True):
        super().__init__()
        c_m = max(dim // 4, 1) if c_m is None else c_m
        c_n = max(dim // 4, 1) if c_n is None else c_n
        if c_m < 1 or c_n < 1:
            raise ValueError(f'DoubleAttention: c_m and c_n must be >= 1, got c_m={c_m}, c_n={c_n}')
        if not reconstruct and c_m != dim:
            raise ValueError(f'DoubleAttention: without reconstruct the output has c_m channels, which must '
                             f'equal dim to keep the input shape; got c_m={c_m}, dim={dim}')
        self.dim, self.c_m, self.c_n, self.reconstruct = dim, c_m, c_n, reconstruct
        self.convA = nn.Conv2d(dim, c_m, 1)
        self.convB = nn.Conv2d(dim, c_n, 1)
        self.convV = nn.Conv2d(dim, c_n, 1)
        self.conv_reconstruct = nn.Conv2d(c_m, dim, 1) if reconstruct else nn.Identity()
        _kaiming_fan_out_(self)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, _, h, w = x.shape
        feats = self.convA(x).flatten(2)                                       # (B, m, N)
        with float32_math(x):
            gather = upcast(self.convB(x).flatten(2)).softmax(dim=-1)         # (B, n, N) over positions
            distribute = upcast(self.convV(x).flatten(2)).softmax(dim=1)      # (B, n, N) over n
        gather, distribute = gather.to(feats.dtype), distribute.to(feats.dtype)
        descriptors = feats @ gather.transpose(1, 2)                           # (B, m, n)
        out = self.conv_reconstruct((descriptors @ distribute).view(b, self.c_m, h, w))
        return (out, torch.stack([gather, distribute], dim=1)) if return_attn else out

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, 2, n, N) gather maps and distribution weights -> (B, 1, N, N)."""
        return (weights[:, 1].transpose(1, 2) @ weights[:, 0]).unsqueeze(1)


# ----------------------------------------------------------------------------- CoT
@ATTENTION.register_module()
class CoTAttention(AttentionOp):
    r"""The Contextual Transformer block (CoT, Sec. 3.2), as the official ``CotLayer``.

    .. math::
        K^1 = \mathrm{ReLU}(\mathrm{BN}(\mathrm{conv}^{g=4}_{k\times k}X)),\quad
        W = \mathrm{GN}\big(\theta([X, K^1])\big) \in \mathbb{R}^{C/8 \times k^2 \times N},\quad
        K^2_{c,p} = \mathrm{SiLU}\Big(\mathrm{BN}\Big(\sum_{o \in k\times k} W_{c \bmod C/8,\,o,\,p}\,
        V_{c,\,p+o}\Big)\Big)

    .. math::
        Y = a_1 \odot K^2 + a_2 \odot K^1,\qquad
        (a_1, a_2) = \mathrm{softmax}_{\text{pair}}\big(\mathrm{SE}(\mathrm{mean}_{N}(K^1 + K^2))\big)

    ``K^1`` is the static context (a grouped k x k convolution of the keys), ``theta`` two 1x1
    convolutions (2C -> C/2 with norm and ReLU, -> k^2 C/8) followed by a GroupNorm with C/8 groups:
    each position gets its own k x k kernel per group of C/8 channels (channel c uses group
    c mod C/8), applied to the values ``V`` = BN(conv1x1 X) inside the k x k window around the
    position (zero padding): the dynamic context ``K^2``. The kernels are normalised by the
    GroupNorm, not a softmax, so they are signed. The two contexts are fused per channel by a
    radix-2 split attention (``SE``: 1x1 conv C -> max(C/2, 32), norm, ReLU, 1x1 conv -> 2C; softmax
    over the pair). Convolutions initialised N(0, 2 / fan_out), norms at identity (the official
    ResNet init). The output is new features (kind ``attention``: CoT replaces the 3x3 convolution of
    a bottleneck, whose residual is the caller's).

    Args:
        dim: channels C (divisible by 8).
        kernel_size: k (official 3; odd).
        norm_cfg: the batch norms' config (``BN`` by default).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the dynamic kernels
    ``W`` as (B, C/8, k^2, H, W) (``local`` form: window offsets row-major; signed);
    :meth:`dense_attention` scatters them to (B, C/8, N, N), the weight of position q's value in
    position p's ``K^2`` (before BN and SiLU) for the channels of each group. Cost O(N C (C + k^2)).

    Catalogue: differs: its dynamic context is ``softmax_N(mean_k(theta)) * V``: one softmax over all
    H*W positions and a product with the value at the same position, so no k x k aggregation at all
    (each output depends on every position of the map through the normaliser); it also drops the
    kernel's GroupNorm and channel sharing, the BN + SiLU after aggregation and the attention fusion
    (it returns K1 + K2); we follow the official CoTNet code
    """

    layout = MAP
    attn_form = 'local'
    paper = 'CoTNet (Li et al., TPAMI 2022)'
    complexity = 'O(N)'

    share_planes = 8
    radix = 2

    def __init__(self, dim: int, kernel_size: int = 3, *, norm_cfg: Optional[dict] = None):
        super().__init__()
        if dim % 8:
            raise ValueError(f'CoTAttention: dim must be divisible by 8 (kernels are shared by dim // 8 groups, '
                             f'the key convolution has 4 groups), got {dim}')
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'CoTAttention: kernel_size must be odd, got {kernel_size}')
        self.dim, self.kernel_size = dim, kernel_size
        groups, k2 = dim // self.share_planes, kernel_size ** 2
        self.key_embed = _conv_norm_relu(dim, kernel_size, norm_cfg, groups=4)
        self.embed = nn.Sequential(
            nn.Conv2d(2 * dim, dim // 2, 1, bias=False), build_norm(norm_cfg, dim // 2, MAP), nn.ReLU(inplace=True),
            nn.Conv2d(dim // 2, k2 * groups, 1), nn.GroupNorm(groups, k2 * groups))
        self.conv1x1 = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), build_norm(norm_cfg, dim, MAP))
        self.bn = build_norm(norm_cfg, dim, MAP)
        self.act = nn.SiLU(inplace=True)
        attn_chs = max(dim * self.radix // 4, 32)
        self.se = nn.Sequential(
            nn.Conv2d(dim, attn_chs, 1), build_norm(norm_cfg, attn_chs, MAP), nn.ReLU(inplace=True),
            nn.Conv2d(attn_chs, self.radix * dim, 1))
        _kaiming_fan_out_(self)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        groups, k = c // self.share_planes, self.kernel_size
        key = self.key_embed(x)
        kernels = self.embed(torch.cat([x, key], dim=1)).view(b, groups, k * k, h, w)
        values = self.conv1x1(x).view(b, c // groups, groups, h, w)          # channel c uses kernel c mod C/8
        dynamic = _window_sum(kernels.transpose(1, 2), values, k).reshape(b, c, h, w)
        dynamic = self.act(self.bn(dynamic))
        fuse = self.se((dynamic + key).mean(dim=(2, 3), keepdim=True))
        with float32_math(x):
            fuse = upcast(fuse).view(b, c, self.radix).softmax(dim=-1)
        fuse = fuse.to(dynamic.dtype)
        out = dynamic * fuse[..., 0, None, None] + key * fuse[..., 1, None, None]
        return (out, kernels) if return_attn else out

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, C/8, k^2, H, W) kernels -> (B, C/8, N, N) over the H x W positions (zero padding)."""
        h, w = int(hw[0]), int(hw[1])
        dh, dw = _window_offsets(self.kernel_size, weights.device)
        rows = torch.arange(h, device=weights.device).repeat_interleave(w)
        cols = torch.arange(w, device=weights.device).repeat(h)
        src_r, src_c = rows + dh[:, None], cols + dw[:, None]                                # (k^2, N)
        valid = (src_r >= 0) & (src_r < h) & (src_c >= 0) & (src_c < w)
        return _scatter_windows(weights.flatten(3), src_r * w + src_c, valid, h * w)


# ----------------------------------------------------------------------------- ACmix
@ATTENTION.register_module()
class ACmix(AttentionOp):
    r"""ACmix: self-attention and convolution on shared 1x1 projections (Sec. 3.3, official code).

    Stage I: ``q, k, v`` are 1x1 convolutions C -> C, split into h heads of d = C / h channels.
    Stage II, attention path: local attention in a K_a x K_a window (reflection padding) with a
    relative position term from ``pe``, a 1x1 convolution of the (x, y) grid in [-1, 1]:

    .. math::
        A_{p,o} = \mathrm{softmax}_{o}\Big(\tfrac{1}{\sqrt{d}}\,q_p^\top
        \big(k_{p+o} + pe_p - pe_{p+o}\big)\Big),\qquad
        F_{\mathrm{att},p} = \sum_{o \in K_a\times K_a} A_{p,o}\, v_{p+o}

    .. math::
        F_{\mathrm{conv}} = \mathrm{dwconv}_{K_c\times K_c}\big(\mathrm{fc}([q, k, v])\big),\qquad
        Y = \alpha\, F_{\mathrm{att}} + \beta\, F_{\mathrm{conv}}

    softmax over the K_a^2 window positions. Convolution path: ``fc`` (1x1, no bias) maps the 3h
    head features of each of the d channels to K_c^2 shifted copies, and a group convolution (d
    groups, initialised as the K_c^2 shift kernels, no bias: the official code deletes it) sums
    them. alpha and beta (``rate1``, ``rate2``) are learnable and start at 0.5. Parameter names
    equal the official ``ACmix``; the other layers keep PyTorch's default initialisation.

    Args:
        dim: channels C (divisible by ``num_heads``).
        kernel_att: K_a, attention window (official 7; odd).
        num_heads: h (official 4, the official ``head``).
        kernel_conv: K_c, convolution kernel (official 3; odd).

    Shapes: (B, C, H, W) -> (B, C, H, W) (stride 1: ACmix's strided form downsamples, which the
    contract's output shape excludes). ``return_attn=True`` also returns the window weights
    (B, h, K_a^2, H, W) (``local`` form: offsets row-major; each sums to one over K_a^2);
    :meth:`dense_attention` scatters them to (B, h, N, N) (a reflected position adds to the pixel it
    mirrors; rows sum to one). Cost O(N C (C + K_a^2 + K_c^2)).

    Catalogue: differs: its positional grid is created in float32 in forward (so a float64 model
    fails) and moved with ``.cuda()`` only, its ``ReflectionPad2d`` fails on maps with a side
    <= K_a // 2 (3 pixels at K_a = 7, e.g. N x 1 maps), and its depth-wise convolution has padding 1
    whatever K_c, so every K_c != 3 fails; we follow the official code with the grid in the input's
    dtype and device, reflection that folds back on small maps and padding K_c // 2 (equal to the
    catalogue wherever it runs)
    """

    layout = MAP
    attn_form = 'local'
    paper = 'ACmix (Pan et al., CVPR 2022)'
    complexity = 'O(N)'

    def __init__(self, dim: int, kernel_att: int = 7, num_heads: int = 4, kernel_conv: int = 3):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'ACmix: dim={dim} is not divisible by num_heads={num_heads}')
        if kernel_att < 1 or kernel_att % 2 == 0 or kernel_conv < 1 or kernel_conv % 2 == 0:
            raise ValueError(f'ACmix: kernel_att and kernel_conv must be odd, got kernel_att={kernel_att}, '
                             f'kernel_conv={kernel_conv}')
        self.dim, self.kernel_att, self.num_heads, self.kernel_conv = dim, kernel_att, num_heads, kernel_conv
        self.head_dim = dim // num_heads
        self.rate1 = nn.Parameter(torch.full((1,), 0.5))
        self.rate2 = nn.Parameter(torch.full((1,), 0.5))
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.conv3 = nn.Conv2d(dim, dim, 1)
        self.conv_p = nn.Conv2d(2, self.head_dim, 1)
        self.fc = nn.Conv2d(3 * num_heads, kernel_conv ** 2, 1, bias=False)
        self.dep_conv = nn.Conv2d(kernel_conv ** 2 * self.head_dim, dim, kernel_conv, padding=kernel_conv // 2,
                                  groups=self.head_dim, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        """``dep_conv`` as the K_c^2 shift kernels (channel i of each group picks offset i), rates 0.5."""
        k2 = self.kernel_conv ** 2
        shifts = torch.zeros(k2, k2)
        shifts[torch.arange(k2), torch.arange(k2)] = 1.0
        with torch.no_grad():
            self.dep_conv.weight.copy_(shifts.view(1, k2, self.kernel_conv, self.kernel_conv).expand_as(
                self.dep_conv.weight))
            self.rate1.fill_(0.5)
            self.rate2.fill_(0.5)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        heads, d = self.num_heads, self.head_dim
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        grid = torch.stack(torch.meshgrid(torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype),
                                          torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype),
                                          indexing='xy'))                   # (2, H, W): x then y
        pe = self.conv_p(grid.unsqueeze(0))                                   # (1, d, H, W)
        with float32_math(x):       # q . (k_{p+o} + pe_p - pe_{p+o}), one offset at a time
            q_att, pe32 = upcast(q.reshape(b * heads, d, h, w)) * d ** -0.5, upcast(pe)
            keys = _window_views(upcast(k.reshape(b * heads, d, h, w)), self.kernel_att, reflect=True)
            pes = _window_views(pe32, self.kernel_att, reflect=True)
            logits = torch.stack([(q_att * k_o).sum(dim=1) - (q_att * pe_o).sum(dim=1) for k_o, pe_o in zip(keys, pes)],
                                 dim=1) + (q_att * pe32).sum(dim=1, keepdim=True)
            weights = logits.softmax(dim=1).to(v.dtype)                       # (Bh, K_a^2, H, W)
        out_att = _window_sum(weights, v.reshape(b * heads, d, h, w), self.kernel_att, reflect=True).view(b, c, h, w)
        shifted = self.fc(torch.cat([t.reshape(b, heads, d, h * w) for t in (q, k, v)], dim=1))  # (B, K_c^2, d, N)
        out_conv = self.dep_conv(shifted.transpose(1, 2).reshape(b, -1, h, w))
        out = self.rate1 * out_att + self.rate2 * out_conv
        return (out, weights.view(b, heads, -1, h, w)) if return_attn else out

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """(B, h, K_a^2, H, W) window weights -> (B, h, N, N), reflected positions folded back."""
        h, w = int(hw[0]), int(hw[1])
        pad, dev = self.kernel_att // 2, weights.device
        dh, dw = _window_offsets(self.kernel_att, dev)
        rows = torch.arange(h, device=dev).repeat_interleave(w)
        cols = torch.arange(w, device=dev).repeat(h)
        src_r = _reflect_index(h, pad, dev)[rows + pad + dh[:, None]]                       # (K_a^2, N)
        src_c = _reflect_index(w, pad, dev)[cols + pad + dw[:, None]]
        valid = torch.ones_like(src_r, dtype=torch.bool)
        return _scatter_windows(weights.flatten(3), src_r * w + src_c, valid, h * w)
