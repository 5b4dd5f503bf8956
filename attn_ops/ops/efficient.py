"""Efficient token mixers: attention-free, linear-time and reduced-key attention.

* AFT: Zhai et al., "An Attention Free Transformer", arXiv:2105.14103 (AFT-full, AFT-local,
  AFT-simple, AFT-conv).
* EMSA: Zhang & Yang, "ResT: An Efficient Transformer for Visual Recognition", NeurIPS 2021,
  arXiv:2105.13677.
* MUSE: Zhao et al., "MUSE: Parallel Multi-Scale Attention for Sequence to Sequence Learning",
  arXiv:1911.09483.
* UFO-ViT: Song, "UFO-ViT: High Performance Linear Vision Transformer without Softmax",
  arXiv:2109.14382.
* MobileViTv2: Mehta & Rastegari, "Separable Self-attention for Mobile Vision Transformers",
  arXiv:2206.02680.
* Simplified self-attention: the catalogue's ``SimplifiedScaledDotProductAttention`` (scaled
  dot-product attention of Vaswani et al., arXiv:1706.03762, without Q/K/V projections).

The exp-based sums (AFT) subtract their maxima and run in float32 under autocast.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import MAP, attend_mask, map_to_tokens, tokens_to_map, zero_padded
from ..registry import ATTENTION
from .base import AttentionOp
from .dot_product import _finish, attend, merge_heads, split_heads
from .layers import float32_math, upcast


def _check_heads(op: str, dim: int, num_heads: int) -> None:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f'{op}: dim={dim} is not divisible by num_heads={num_heads}')


def _zero_rows(weights: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Attention weights (B, h, N, M) with the rows of padded queries set to zero."""
    return weights if mask is None else weights.masked_fill(~mask[:, None, :, None], 0.0)


# ----------------------------------------------------------------------------- AFT
def _aft_tokens(q: Tensor, k: Tensor, v: Tensor, w: Optional[Tensor], mask: Optional[Tensor],
                return_attn: bool):
    r"""AFT on tokens: :math:`\sigma(Q_t) \odot \sum_{t'} e^{K_{t'} + w_{tt'}} V_{t'} / \sum_{t'} e^{K_{t'} + w_{tt'}}`.

    q, k, v (B, N, C); ``w`` (N, N) position biases, or None for AFT-simple (w = 0). The maxima of
    K (over real tokens, per channel) and of each row of w are subtracted before exp (they cancel
    in the ratio); sums in float32. Returns (B, N, C) and, with ``return_attn``, the weights
    (B, C, N, N) of each channel (rows sum to one over t').
    """
    with float32_math(q):
        k32, v32 = upcast(k), upcast(v)
        if mask is not None:
            k32 = k32.masked_fill(~attend_mask(mask)[..., None], float('-inf'))
        ek = torch.exp(k32 - k32.amax(dim=1, keepdim=True))                # (B, N, C), 0 at padding
        ew = None if w is None else torch.exp(upcast(w) - upcast(w).amax(dim=1, keepdim=True))
        tiny = torch.finfo(ek.dtype).tiny
        if return_attn:
            scores = ek.transpose(1, 2)[:, :, None, :]                      # (B, C, 1, N)
            if ew is not None:
                scores = scores * ew                                         # (B, C, N, N)
            weights = scores / scores.sum(-1, keepdim=True).clamp_min(tiny)
            weights = weights.expand(-1, -1, q.shape[1], -1)
            mixed = torch.einsum('bcts,bsc->btc', weights, v32)
        elif ew is None:
            mixed = (ek * v32).sum(1, keepdim=True) / ek.sum(1, keepdim=True).clamp_min(tiny)
        else:
            num = torch.einsum('ts,bsc->btc', ew, ek * v32)
            mixed = num / torch.einsum('ts,bsc->btc', ew, ek).clamp_min(tiny)
        out = (torch.sigmoid(upcast(q)) * mixed).to(q.dtype)
    out = zero_padded(out, mask)
    if not return_attn:
        return out
    return out, _zero_rows(weights.to(q.dtype), mask)


@ATTENTION.register_module()
class AFTFull(AttentionOp):
    r"""AFT-full (An Attention Free Transformer, Eq. 2), tokens.

    .. math::
        Y_t = \sigma(Q_t) \odot
        \frac{\sum_{t'} \exp(K_{t'} + w_{t,t'}) \odot V_{t'}}{\sum_{t'} \exp(K_{t'} + w_{t,t'})},
        \qquad w = U V^\top

    with :math:`Q, K, V = X W_{qkv}` (one linear with bias) and the learned pair-wise position
    biases factorised as the paper does, :math:`U, V \in \mathbb{R}^{T \times d'}`. The sums run
    over the keys t' (per channel: each channel has its own implicit attention); the maxima of
    K (per channel) and of each row of w are subtracted before exp. ``max_len`` fixes T, the
    longest input; shorter inputs use the top-left N x N block of w, longer ones are refused.
    Initialisation: the paper states none; U and V are drawn N(0, 0.02^2) (w ~ 0, AFT-simple at
    start), the linear takes PyTorch's default.

    Args:
        dim: channels C.
        max_len: T, the maximum number of tokens (w is T x T).
        pos_dim: d', the rank of the factorised w (paper 128).

    Shapes: ``x`` (B, N, C) with N <= max_len, ``mask`` (B, N) bool -> (B, N, C), zeros at
    padding; a token's position is its index. ``return_attn=True`` also returns the weights
    (B, C, N, N) before the gate, one map per channel (``dense`` form: rows sum to one over the
    keys; padded keys and padded query rows exactly zero). Cost O(N^2 C) time, O(N C + N^2)
    memory (w is never multiplied out per channel).

    Catalogue: differs: ``AFT_FULL`` fixes N at construction (built with n=49 it fails on 50
    tokens) and takes exp without subtracting a maximum (inputs of scale 30 overflow to inf/inf =
    NaN); we take ``max_len`` and crop w, and subtract the maxima (equal to ``AFT_FULL(n=N)`` with
    its bias set to our w)
    """

    supports_mask = True
    attn_form = 'dense'
    paper = 'AFT (Zhai et al., 2021)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, max_len: int = 1024, pos_dim: int = 128):
        super().__init__()
        if max_len < 1 or pos_dim < 1:
            raise ValueError(f'{type(self).__name__}: max_len and pos_dim must be >= 1, got max_len={max_len}, '
                             f'pos_dim={pos_dim}')
        self.dim, self.max_len, self.pos_dim = dim, max_len, pos_dim
        self.qkv = nn.Linear(dim, 3 * dim)
        self.pos_u = nn.Parameter(torch.empty(max_len, pos_dim))
        self.pos_v = nn.Parameter(torch.empty(max_len, pos_dim))
        nn.init.normal_(self.pos_u, std=0.02)
        nn.init.normal_(self.pos_v, std=0.02)

    def position_bias(self, n: int) -> Tensor:
        """w (n, n): the position biases of the first n positions."""
        return self.pos_u[:n] @ self.pos_v[:n].T

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        n = x.shape[1]
        if n > self.max_len:
            raise ValueError(f'{type(self).__name__}(max_len={self.max_len}) got {n} tokens; its position '
                             f'biases are defined for at most max_len tokens: build it with max_len >= {n}')
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return _aft_tokens(q, k, v, self.position_bias(n), mask, return_attn)


@ATTENTION.register_module()
class AFTLocal(AFTFull):
    r"""AFT-local (An Attention Free Transformer, Sec. 3.2), tokens: AFT-full with the position
    biases kept inside a window of ``window`` positions and zero (not -inf) outside.

    .. math::
        Y_t = \sigma(Q_t) \odot
        \frac{\sum_{t'} \exp(K_{t'} + w_{t,t'}) \odot V_{t'}}{\sum_{t'} \exp(K_{t'} + w_{t,t'})},
        \qquad w_{t,t'} = \begin{cases} (U V^\top)_{t,t'} & |t - t'| < s \\ 0 & \text{otherwise} \end{cases}

    Every token still reaches every other (global connectivity); the sums run over the keys t',
    maxima subtracted. Computed as AFT-full with the banded w (O(N^2) time; the paper's blocked
    O(N s) form is not implemented). Initialisation as :class:`AFTFull`.

    Args:
        dim: channels C.
        max_len: T, the maximum number of tokens.
        window: s, learned biases where |t - t'| < s (a band of 2s - 1 positions), zero elsewhere.
        pos_dim: d', the rank of the factorised w (paper 128).

    Shapes: as :class:`AFTFull`; ``return_attn=True`` also returns (B, C, N, N) weights (``dense``).

    Catalogue: no counterpart (``AFT.py`` has AFT-full and its simple form only)
    """

    def __init__(self, dim: int, max_len: int = 1024, window: int = 32, pos_dim: int = 128):
        super().__init__(dim, max_len, pos_dim)
        if window < 1:
            raise ValueError(f'AFTLocal: window must be >= 1, got {window}')
        self.window = window

    def position_bias(self, n: int) -> Tensor:
        pos = torch.arange(n, device=self.pos_u.device)
        band = (pos[:, None] - pos[None, :]).abs() < self.window
        return super().position_bias(n) * band


@ATTENTION.register_module()
class AFTSimple(AttentionOp):
    r"""AFT-simple (An Attention Free Transformer, Eq. 4), tokens: AFT without position biases.

    .. math::
        Y_t = \sigma(Q_t) \odot \sum_{t'} \mathrm{softmax}_{t'}(K)_{t'} \odot V_{t'}

    Softmax over the tokens t' per channel (the same context for every t), max subtracted, in
    float32; linear in N and defined for any N. ``Q, K, V = X W_{qkv}`` (one linear with bias,
    PyTorch's default initialisation; the paper states none).

    Args:
        dim: channels C.

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool -> (B, N, C), zeros at padding.
    ``return_attn=True`` also returns the per-channel weights (B, C, N, N) before the gate
    (``dense``; every real row equals the softmax over the keys). Cost O(N C).

    Catalogue: differs: ``AFT_FULL(simple=True)`` is still built for one N (its zero bias is an
    (n, n) plain tensor, not a buffer, so ``.to()`` and ``.double()`` leave it behind) and takes exp
    without subtracting a maximum (overflow to NaN at scale 30); ours has no N and subtracts it
    (equal to ``AFT_FULL(n=N, simple=True)``)
    """

    supports_mask = True
    attn_form = 'dense'
    paper = 'AFT (Zhai et al., 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return _aft_tokens(q, k, v, None, mask, return_attn)


@ATTENTION.register_module()
class AFTConv(AttentionOp):
    r"""AFT-conv (An Attention Free Transformer, Sec. 3.4), maps: AFT-local in 2D with the biases
    shared over positions, one s x s kernel per head.

    .. math::
        Y^i = \sigma(Q^i) \odot
        \frac{\mathrm{conv2d}\big(e^{K^i} \odot V^i,\ e^{w^i} - 1\big) + \sum_{t'} e^{K^i_{t'}} \odot V^i_{t'}}
             {\mathrm{conv2d}\big(e^{K^i},\ e^{w^i} - 1\big) + \sum_{t'} e^{K^i_{t'}}},
        \qquad w^i = \gamma^i \frac{\hat w^i - \mathrm{mean}(\hat w^i)}{\mathrm{std}(\hat w^i)} + \beta^i

    i.e. :math:`\sum_{t'} e^{K_{t'} + w_{t,t'}} V_{t'} / \sum_{t'} e^{K_{t'} + w_{t,t'}}` with
    :math:`w_{t,t'}` the kernel entry at the offset t' - t inside the s x s window and 0 outside;
    the sums run over all H x W positions t', per channel. Heads split the channels into groups
    that share a kernel (depth-wise convolution, zero padding s // 2, so any H x W works).
    Q, K, V come from one 1x1 convolution (PyTorch's default initialisation). The kernel is
    re-parameterised per head as the paper does (std over its s^2 entries, + 1e-5 in the variance),
    with gain gamma and bias beta initialised at 0, so the op starts as AFT-simple. Maxima of K (per
    channel) and of max(0, w) are subtracted before exp, in float32.

    Args:
        dim: channels C (divisible by ``num_heads``).
        num_heads: h (the paper's AFT-conv-small uses 16 heads).
        kernel_size: s, odd (the paper's AFT-conv-small uses 11).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the per-channel
    weights (B, C, N, N), N = H*W row-major (``dense``: rows sum to one over the N positions).
    Cost O(N s^2 C).

    Catalogue: no counterpart (``AFT.py`` has AFT-full and its simple form only)
    """

    layout = MAP
    attn_form = 'dense'
    paper = 'AFT (Zhai et al., 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_heads: int = 16, kernel_size: int = 11):
        super().__init__()
        _check_heads('AFTConv', dim, num_heads)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'AFTConv: kernel_size must be odd (a window centred on each position), '
                             f'got {kernel_size}')
        self.dim, self.num_heads, self.kernel_size = dim, num_heads, kernel_size
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.pos_weight = nn.Parameter(torch.randn(num_heads, kernel_size, kernel_size))
        self.pos_gain = nn.Parameter(torch.zeros(num_heads))
        self.pos_bias = nn.Parameter(torch.zeros(num_heads))

    def kernel(self) -> Tensor:
        """w (heads, s, s): the re-parameterised kernels."""
        w = self.pos_weight
        mean = w.mean(dim=(1, 2), keepdim=True)
        var = w.var(dim=(1, 2), unbiased=False, keepdim=True)
        return self.pos_gain[:, None, None] * (w - mean) / torch.sqrt(var + 1e-5) + self.pos_bias[:, None, None]

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        q, k, v = self.qkv(x).chunk(3, dim=1)                                # (B, C, H, W) each
        if return_attn:
            return self._explicit(q, k, v)
        c, s = self.dim, self.kernel_size
        group = c // self.num_heads
        with float32_math(x):
            k32, v32, kern = upcast(k), upcast(v), upcast(self.kernel())
            ek = torch.exp(k32 - k32.amax(dim=(2, 3), keepdim=True))
            shift = kern.amax(dim=(1, 2)).clamp_min(0.0)                    # every exponent <= 0
            local = torch.exp(kern - shift[:, None, None]) - torch.exp(-shift)[:, None, None]  # e^-a (e^w - 1)
            local = local.repeat_interleave(group, dim=0)[:, None]          # (C, 1, s, s)
            scale = torch.exp(-shift).repeat_interleave(group)[None, :, None, None]
            ekv = ek * v32
            num = F.conv2d(ekv, local, padding=s // 2, groups=c) + scale * ekv.sum(dim=(2, 3), keepdim=True)
            den = F.conv2d(ek, local, padding=s // 2, groups=c) + scale * ek.sum(dim=(2, 3), keepdim=True)
            out = torch.sigmoid(upcast(q)) * num / den.clamp_min(torch.finfo(den.dtype).tiny)
        return out.to(x.dtype)

    def dense_bias(self, hw: Sequence[int]) -> Tensor:
        """The kernels as dense biases (heads, N, N): w[i, t, t'] for t' - t inside the window, else 0."""
        h, w = int(hw[0]), int(hw[1])
        r = self.kernel_size // 2
        rows = torch.arange(h, device=self.pos_weight.device).repeat_interleave(w)
        cols = torch.arange(w, device=self.pos_weight.device).repeat(h)
        dy = rows[None, :] - rows[:, None] + r                               # (N, N): t' - t, shifted
        dx = cols[None, :] - cols[:, None] + r
        inside = (dy >= 0) & (dy < self.kernel_size) & (dx >= 0) & (dx < self.kernel_size)
        kern = self.kernel()[:, dy.clamp(0, self.kernel_size - 1), dx.clamp(0, self.kernel_size - 1)]
        return kern * inside

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor):
        """The N x N form: weights (B, C, N, N) = softmax over t' of K_t' + w_tt', per channel."""
        b, c, h, w = q.shape
        with float32_math(q):
            bias = upcast(self.dense_bias((h, w))).repeat_interleave(c // self.num_heads, dim=0)  # (C, N, N)
            logits = upcast(k).flatten(2)[:, :, None, :] + bias                   # (B, C, N, N)
            weights = logits.softmax(dim=-1)
            mixed = torch.einsum('bcts,bcs->bct', weights, upcast(v).flatten(2))
            out = torch.sigmoid(upcast(q).flatten(2)) * mixed
        return out.view(b, c, h, w).to(q.dtype), weights.to(q.dtype)


# ----------------------------------------------------------------------------- EMSA
def _instance_norm(a: Tensor, valid: Optional[Tensor], eps: float) -> Tensor:
    """InstanceNorm over the last two axes of ``a`` (B, h, N, M), statistics over ``valid`` entries
    (bool, broadcastable) only; without ``valid`` it equals ``nn.InstanceNorm2d(h)``."""
    if valid is None:
        return F.instance_norm(a, eps=eps)
    count = valid.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
    mean = (a * valid).sum(dim=(-2, -1), keepdim=True) / count
    var = ((a - mean).square() * valid).sum(dim=(-2, -1), keepdim=True) / count
    return (a - mean) / torch.sqrt(var + eps)


@ATTENTION.register_module()
class EMSA(AttentionOp):
    r"""Efficient multi-head self-attention (ResT, Eq. 3-5), tokens.

    .. math::
        \mathrm{EMSA}(X) = \mathrm{IN}\Big(\mathrm{softmax}_{\text{keys}}\Big(\mathrm{conv}_{1\times1}^{\text{heads}}
        \Big(\frac{Q K^\top}{\sqrt{d_k}}\Big)\Big)\Big) V\, W_o,\qquad
        K, V = \mathrm{LN}\big(\mathrm{DWConv}_{s+1, /s}(X)\big) W_{kv}

    ``Q = X W_q``; keys and values come from the map reduced by a depth-wise convolution of
    kernel s+1, stride s, padding s // 2 and a LayerNorm (``sr_ratio`` s; s = 1 uses X itself).
    The transform (``apply_transform``, with more than one head) mixes the heads' logits with a
    1x1 convolution before the softmax over the keys and instance-normalises each head's map
    (over its N x M entries, biased variance, eps 1e-5, no affine) after it. A padding mask is
    applied before the softmax (padded keys get -inf) and the instance norm takes its statistics
    over real queries x real keys only. Without the transform the op is multi-head attention on
    the reduced keys through SDPA. The LayerNorm is ResT's own, not a ``norm_cfg`` a head could swap
    for a batch norm. Initialisation as ResT: weights truncated-normal std 0.02, biases 0,
    LayerNorm (1, 0).

    Args:
        dim: channels C (divisible by ``num_heads``).
        num_heads: heads (ResT uses 1, 2, 4, 8 over its stages).
        sr_ratio: s, the key reduction (ResT uses 8, 4, 2, 1 over its stages); s > 1 needs the
            token grid: ``hw=(H, W)`` per call (the layout adapter passes it for maps).
        apply_transform: the heads' conv + instance norm (ResT's models use it).
        qkv_bias: biases of the q and kv projections (ResT's models: True).
        attn_drop, proj_drop: dropout on the weights and on the output.

    Shapes: ``forward(x, *, mask=None, return_attn=False, hw=None)``: ``x`` (B, N, C), ``mask``
    (B, N) bool -> (B, N, C), zeros at padding; ``hw`` (H, W) with H*W = N when ``sr_ratio > 1``
    (a padding mask with padded tokens is then refused: the reduction runs over the grid).
    Without the transform (or with one head) ``return_attn=True`` also returns the weights
    (B, heads, N, M), M = reduced keys (``dense``: rows sum to one); with it the instance norm
    makes the map signed with rows summing to zero, so the op forms no attention distribution
    and refuses ``return_attn``. Cost O(N^2 C / s^2).

    Catalogue: differs: ``EMSA`` applies its mask after the softmax (``masked_fill(-inf)`` on
    the normalised weights: rows no longer sum to one and a masked entry makes the output -inf or
    NaN), and fixes H, W at construction; we mask before the softmax and take ``hw`` per call
    (equal without a mask)
    """

    supports_mask = True
    attn_form = None   # an instance forms dense weights when the transform is off (see __init__)
    paper = 'ResT (Zhang & Yang, NeurIPS 2021)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, num_heads: int = 8, sr_ratio: int = 1, apply_transform: bool = True, *,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        _check_heads('EMSA', dim, num_heads)
        if sr_ratio < 1:
            raise ValueError(f'EMSA: sr_ratio must be >= 1, got {sr_ratio}')
        self.dim, self.num_heads, self.sr_ratio, self.attn_drop = dim, num_heads, sr_ratio, attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio + 1, stride=sr_ratio, padding=sr_ratio // 2, groups=dim)
            self.sr_norm = nn.LayerNorm(dim)
        self.apply_transform = apply_transform and num_heads > 1
        if self.apply_transform:
            self.transform_conv = nn.Conv2d(num_heads, num_heads, 1)
        else:
            self.attn_form = 'dense'
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _reduce(self, x: Tensor, mask: Optional[Tensor], hw) -> Tensor:
        """The reduced key/value tokens (B, M, C): depth-wise strided conv on the grid + LN."""
        name = f'EMSA(sr_ratio={self.sr_ratio})'
        if hw is None:
            raise ValueError(f'{name} reduces the keys on the H x W grid of the tokens: pass hw=(H, W) '
                             f'with H*W={x.shape[1]} (as_layout(op, "map") does it for maps)')
        if mask is not None and not bool(mask.all()):
            raise ValueError(f'{name}: the reduction runs over the token grid, which padded tokens do not '
                             'have; use sr_ratio=1 with padding masks')
        grid = tokens_to_map(x, hw)
        k, p = self.sr_ratio + 1, self.sr_ratio // 2
        grid = F.pad(grid, (0, max(0, k - grid.shape[3] - 2 * p), 0, max(0, k - grid.shape[2] - 2 * p)))
        return self.sr_norm(map_to_tokens(self.sr(grid)))

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False,
                hw: Optional[Sequence[int]] = None):
        self.check_input(x, mask, return_attn)
        q = split_heads(self.q(x), self.num_heads)
        if self.sr_ratio > 1:
            source, key_mask = self._reduce(x, mask, hw), None
        else:
            source, key_mask = x, mask
        k, v = (split_heads(t, self.num_heads) for t in self.kv(source).chunk(2, dim=-1))
        drop = self.attn_drop if self.training else 0.0
        if not self.apply_transform:
            return _finish(self, attend(q, k, v, key_mask, drop, return_attn), mask, return_attn)
        with float32_math(q):
            logits = (upcast(q) * q.shape[-1] ** -0.5) @ upcast(k).transpose(-2, -1)   # (B, h, N, M)
            logits = F.conv2d(logits, upcast(self.transform_conv.weight), upcast(self.transform_conv.bias))
            if key_mask is not None:
                logits = logits.masked_fill(~attend_mask(key_mask)[:, None, None, :], float('-inf'))
            weights = logits.softmax(dim=-1)
            valid = None if mask is None else (mask[:, None, :, None] & mask[:, None, None, :])
            weights = _instance_norm(weights, valid, eps=1e-5)
            if valid is not None:
                weights = weights.masked_fill(~valid, 0.0)
        out = F.dropout(weights.to(v.dtype), drop, self.training) @ v
        return _finish(self, out, mask, False)


# ----------------------------------------------------------------------------- MUSE
@ATTENTION.register_module()
class MUSEAttention(AttentionOp):
    r"""Parallel multi-scale attention (MUSE, Sec. 2): self-attention plus dynamically selected
    depth-wise separable convolutions on the same values, tokens.

    .. math::
        Y = \mathrm{MHA}(X) + \sum_{i} \mathrm{softmax}(\alpha)_i\,
        \mathrm{PW}_i\big(\mathrm{DW}_{k_i}(X W_V)\big)

    ``MHA`` is multi-head attention (softmax over the keys, scale 1/sqrt(d_h), output projection);
    the convolution branch shares its value projection ``X W_V`` (the paper's unified space) and
    runs, for each kernel size k_i, a depth-wise 1D convolution over the token sequence (padding
    k_i // 2; k_i = 1 is point-wise only) then a point-wise one; softmax over the learnable
    selection weights alpha (initialised equal). Projections with bias, PyTorch's default
    initialisation.

    Args:
        dim: channels C (divisible by ``num_heads``).
        num_heads: attention heads.
        kernel_sizes: odd kernel sizes of the convolution branch (paper 1, 3, 5).
        qkv_bias: bias of the q, k, v projection. attn_drop, proj_drop: dropout rates.

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool -> (B, N, C), zeros at padding. Padded keys
    are excluded from the softmax and padded values are zeroed before the convolutions, so a
    padded tail equals the convolution's own zero padding. ``return_attn=True`` also returns the
    attention branch's weights (B, heads, N, N) (``dense``; rows sum to one over the keys).
    Cost O(N^2 C).

    Catalogue: differs: ``MUSEAttention.forward`` re-creates its selection weights as a new
    ``nn.Parameter(softmax(dy_paras))`` on every call: an optimiser holds the old tensor, so they
    never train, and each call applies one more softmax, so outputs drift call to call; ours keeps
    one parameter alpha and takes its softmax in forward (equal on the first call)
    """

    supports_mask = True
    attn_form = 'dense'
    paper = 'MUSE (Zhao et al., 2019)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, num_heads: int = 8, kernel_sizes: Sequence[int] = (1, 3, 5), *,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        _check_heads('MUSEAttention', dim, num_heads)
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f'MUSEAttention: kernel_sizes must be odd sizes >= 1 (the sequence keeps its length), '
                             f'got {kernel_sizes}')
        self.dim, self.num_heads, self.kernel_sizes, self.attn_drop = dim, num_heads, kernel_sizes, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, k, padding=k // 2, groups=dim) if k > 1 else nn.Identity(),
                          nn.Conv1d(dim, dim, 1))
            for k in kernel_sizes)
        self.alpha = nn.Parameter(torch.ones(len(kernel_sizes)))

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        out = attend(q, k, v, mask, self.attn_drop if self.training else 0.0, return_attn)
        y, weights = _finish(self, out, mask, True) if return_attn else (_finish(self, out, mask, False), None)
        values = zero_padded(merge_heads(v), mask).transpose(1, 2)                 # (B, C, N)
        select = self.alpha.softmax(dim=0)
        conv = sum(a * branch(values) for a, branch in zip(select, self.convs))
        y = zero_padded(y + conv.transpose(1, 2), mask)
        return (y, weights) if return_attn else y


# ----------------------------------------------------------------------------- UFO
@ATTENTION.register_module()
class UFOAttention(AttentionOp):
    r"""UFO attention (UFO-ViT, Eq. 4-6): linear attention with cross-normalisation, tokens.

    .. math::
        Y = \big[\Vert_h\, \mathrm{XN}(Q_h)\, \mathrm{XN}(K_h^\top V_h)\big] W_o,\qquad
        \mathrm{XN}(a) = \gamma_h\, \frac{a}{\lVert a \rVert_2}

    per head h, with ``Q, K, V = X W_{qkv}`` (with bias). ``K^T V`` (d_h x d_h) sums over the N
    tokens (in float32); XNorm takes the L2 norm along the last axis: each query's d_h channels,
    and each row of ``K^T V`` (over the value channels), the norm clamped at ``eps``; one learnable
    gamma per head, shared by both, initialised N(0, 1) as the catalogue (the paper states no
    value). No softmax: linear in N.

    Args:
        dim: channels C (divisible by ``num_heads``).
        num_heads: heads.
        qkv_bias: bias of the q, k, v projection. proj_drop: dropout on the output.
        eps: lower bound of the L2 norms (a zero vector maps to zero, not 0/0).

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool -> (B, N, C); padded tokens are left out of
    ``K^T V`` and their outputs are zero. Forms no attention map. Cost O(N C d_h).

    Catalogue: differs: its XNorm divides by the L2 norm with no floor, so a zero query (an
    all-zero token with its zero-initialised biases) gives 0/0 = NaN; we clamp the norm at eps
    (equal otherwise)
    """

    supports_mask = True
    paper = 'UFO-ViT (Song, 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_heads: int = 8, *, qkv_bias: bool = True, proj_drop: float = 0.0,
                 eps: float = 1e-12):
        super().__init__()
        _check_heads('UFOAttention', dim, num_heads)
        self.dim, self.num_heads, self.eps = dim, num_heads, eps
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gamma = nn.Parameter(torch.randn(1, num_heads, 1, 1))

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        if mask is not None:
            k = k.masked_fill(~mask[:, None, :, None], 0.0)
        with float32_math(q):
            gamma = upcast(self.gamma)
            kv = F.normalize(upcast(k).transpose(-2, -1) @ upcast(v), dim=-1, eps=self.eps) * gamma
            out = (F.normalize(upcast(q), dim=-1, eps=self.eps) * gamma) @ kv               # (B, h, N, d)
        y = self.proj_drop(self.proj(merge_heads(out.to(x.dtype))))
        return zero_padded(y, mask)


# ----------------------------------------------------------------------------- MobileViTv2
@ATTENTION.register_module()
class MobileViTv2Attention(AttentionOp):
    r"""Separable self-attention (MobileViTv2, Eq. 3-5), tokens.

    .. math::
        c_s = \mathrm{softmax}_N(X W_I),\qquad c_v = \sum_{n} c_s(n)\, (X W_K)_n,\qquad
        Y = \big(\mathrm{ReLU}(X W_V) \odot c_v\big) W_O

    One latent token scores every input token (``W_I``: C -> 1, softmax over the N tokens); the
    context vector c_v is the score-weighted sum of the keys, broadcast to every token and
    multiplied with its ReLU-ed value. ``W_I`` (C -> 1), ``W_K, W_V`` (one linear C -> 2C) and
    ``W_O`` are linears with bias (ml-cvnets' ``qkv_proj`` and ``out_proj``), PyTorch's default
    initialisation. The scores (their projection included), the context and its product with the
    values run in float32 under autocast, backward too: their gradients sum over all tokens.

    Args:
        dim: channels C.
        attn_drop: dropout on the context scores. bias: biases of both projections.

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool -> (B, N, C), zeros at padding (padded tokens
    get no score). ``return_attn=True`` also returns the context scores as (B, 1, N, N), the
    weight of token j's key in every token's context vector (``dense``: the same row for every
    real token, summing to one). Cost O(N C^2).

    Catalogue: differs: ``MobileViTv2Attention`` multiplies the context vector with the values
    without the paper's ReLU (Eq. 5; ml-cvnets' ``F.relu(value)``); we apply it (equal to the
    catalogue with the ReLU added)
    """

    supports_mask = True
    attn_form = 'dense'
    paper = 'MobileViTv2 (Mehta & Rastegari, 2022)'
    complexity = 'O(N)'

    def __init__(self, dim: int, *, attn_drop: float = 0.0, bias: bool = True):
        super().__init__()
        self.dim = dim
        self.to_score = nn.Linear(dim, 1, bias=bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        self.attn_drop = nn.Dropout(attn_drop)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        key, value = self.kv(x).chunk(2, dim=-1)
        with float32_math(x):
            # a product and a sum rather than a matmul: autocast leaves them (and their backward,
            # which sums over every token) in float32
            score = (upcast(x) * upcast(self.to_score.weight)).sum(dim=-1, keepdim=True)   # (B, N, 1)
            if self.to_score.bias is not None:
                score = score + upcast(self.to_score.bias)
            if mask is not None:
                score = score.masked_fill(~attend_mask(mask)[..., None], float('-inf'))
            scores = score.softmax(dim=1)                                          # (B, N, 1)
            context = (self.attn_drop(scores) * upcast(key)).sum(dim=1, keepdim=True)   # (B, 1, C)
            mixed = F.relu(upcast(value)) * context
        y = zero_padded(self.out_proj(mixed.to(value.dtype)), mask)
        if not return_attn:
            return y
        weights = scores[:, :, 0][:, None, None, :].expand(-1, 1, x.shape[1], -1)
        return y, _zero_rows(weights.to(x.dtype), mask)


# ----------------------------------------------------------------------------- simplified
@ATTENTION.register_module()
class SimplifiedSelfAttention(AttentionOp):
    r"""Multi-head scaled dot-product self-attention without Q/K/V projections (the catalogue's
    ``SimplifiedScaledDotProductAttention``), tokens.

    .. math::
        Y = \big[\Vert_h\, \mathrm{softmax}_{\text{keys}}\big(X_h X_h^\top / \sqrt{d_h}\big) X_h\big] W_o

    ``X_h`` is the h-th group of d_h = C / heads channels, used as query, key and value; softmax
    over the keys; ``W_o`` a linear with bias (PyTorch's default initialisation). Runs through SDPA.

    Args:
        dim: channels C (divisible by ``num_heads``).
        num_heads: heads (the catalogue's example uses 8).
        attn_drop, proj_drop: dropout rates.

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool -> (B, N, C), zeros at padding.
    ``return_attn=True`` also returns the weights (B, heads, N, N) (``dense``; rows sum to one
    over the keys, padded keys exactly zero). Cost O(N^2 C).

    Catalogue: equal (``SimplifiedScaledDotProductAttention``; its mask is applied as given, ours
    marks real tokens)
    """

    supports_mask = True
    attn_form = 'dense'
    paper = 'catalogue (Transformer attention without Q/K/V projections)'
    complexity = 'O(N^2)'

    def __init__(self, dim: int, num_heads: int = 8, *, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        _check_heads('SimplifiedSelfAttention', dim, num_heads)
        self.dim, self.num_heads, self.attn_drop = dim, num_heads, attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        heads = split_heads(x, self.num_heads)
        out = attend(heads, heads, heads, mask, self.attn_drop if self.training else 0.0, return_attn)
        return _finish(self, out, mask, return_attn)
