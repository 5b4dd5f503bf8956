"""Channel attention: gates and branch selections computed from pooled channel statistics.

* Squeeze-and-Excitation (Hu et al., CVPR 2018, arXiv:1709.01507);
* Selective Kernel (Li et al., CVPR 2019, arXiv:1903.06586);
* ECA-Net (Wang et al., CVPR 2020, arXiv:1910.03151);
* Spatial Group-wise Enhance (Li, Hu and Yang, 2019, arXiv:1905.09646);
* SA-Net, shuffle attention (Zhang and Yang, ICASSP 2021, arXiv:2102.00240);
* EPSANet, pyramid split attention (Zhang et al., 2021, arXiv:2105.14447);
* ParNet's RepVGG-SSE block (Goyal et al., "Non-deep Networks", 2021, arXiv:2110.07641);
* S2-MLPv2's spatial-shift split attention (Yu et al., 2021, arXiv:2108.01072).

Every op here works on maps (B, C, H, W) of any size and mixes no tokens across samples. Group
counts that must divide the channels (SK, SGE, SA, EPSANet) default to ``None``: the paper's value,
reduced to its greatest common divisor with the channels for narrow maps (so ``dim=16`` builds);
an explicit value must divide them. Hidden widths ``C // r`` are at least 1.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import MAP
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import build_norm, check_positive, float32_math, float32_mean, float32_softmax, upcast


# ----------------------------------------------------------------------------- shared steps
def _hidden(channels: int, reduction: int) -> int:
    return max(1, channels // reduction)


def _groups(op: str, requested: Optional[int], paper: int, channels: int, what: str) -> int:
    """``requested`` when it divides ``channels``; ``None`` -> gcd(paper, channels)."""
    if requested is None:
        return math.gcd(paper, channels)
    check_positive(op, groups=requested)
    if channels % requested:
        raise ValueError(f'{op}: groups={requested} must divide {what}={channels} '
                         f'(leave groups=None for the paper\'s {paper} reduced to fit)')
    return requested


def _odd_kernels(op: str, kernels: Sequence[int]) -> tuple:
    kernels = tuple(kernels)
    if not kernels or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in kernels):
        raise ValueError(f'{op}: kernels must be odd positive sizes, one per branch, got {kernels!r}')
    return kernels


# ----------------------------------------------------------------------------- SE
@ATTENTION.register_module()
class SEAttention(AttentionOp):
    r"""Squeeze-and-Excitation (Hu et al., CVPR 2018, Eq. 2-4): a channel gate from the global mean.

    .. math::
        z = \mathrm{mean}_{H,W}(X),\qquad g = \sigma\big(W_2\,\mathrm{ReLU}(W_1 z)\big),\qquad Y = X \odot g

    :math:`W_1 \in \mathbb{R}^{C/r \times C}`, :math:`W_2 \in \mathbb{R}^{C \times C/r}` without bias
    (as the paper's formula); ``g`` is one weight in (0, 1) per sample and channel. Kind ``gate``:
    the output is the input re-weighted (a caller adds no identity). PyTorch's default Linear init
    (the paper states none).

    Args:
        dim: channels C.
        reduction: r (paper 16); the hidden width is ``max(1, C // r)``.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``g`` as (B, C, 1, 1)
    (``gate`` form). Cost O(N C + C^2 / r).

    Catalogue: equal (``SEAttention(channel, reduction)``)
    """

    layout = MAP
    kind = 'gate'
    attn_form = 'gate'
    paper = 'SENet (Hu et al., CVPR 2018)'
    complexity = 'O(N)'

    def __init__(self, dim: int, reduction: int = 16):
        super().__init__()
        check_positive('SEAttention', dim=dim, reduction=reduction)
        self.dim, self.reduction = dim, reduction
        self.fc1 = nn.Linear(dim, _hidden(dim, reduction), bias=False)
        self.fc2 = nn.Linear(_hidden(dim, reduction), dim, bias=False)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        z = float32_mean(x, (-2, -1)).flatten(1)  # (B, C)
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))[:, :, None, None]
        out = x * g
        return (out, g) if return_attn else out


# ----------------------------------------------------------------------------- SK
@ATTENTION.register_module()
class SKAttention(AttentionOp):
    r"""Selective Kernel convolution (Li et al., CVPR 2019, Eq. 1-6): split, fuse, select.

    .. math::
        U_m = \mathrm{ReLU}(\mathrm{BN}(\mathrm{conv}_m X)),\quad
        z = \mathrm{ReLU}\big(\mathrm{BN}(W\,\mathrm{mean}_{H,W}\textstyle\sum_m U_m)\big),\quad
        Y = \textstyle\sum_m \mathrm{softmax}_{m}(A_m z) \odot U_m

    ``M`` branches (one per kernel) of grouped convolutions; :math:`W \in \mathbb{R}^{d \times C}`
    with :math:`d = \max(C / r, L)`, :math:`A_m \in \mathbb{R}^{C \times d}`; the softmax runs
    across the M branches, separately for every channel. Kind ``attention``: the output is the
    selected branch features, not the input re-weighted (a head adds its own residual). PyTorch's
    default init; norms start at weight 1, bias 0.

    Args:
        dim: channels C.
        kernels: receptive field of each branch (paper (3, 5): M = 2).
        reduction: r (paper 16). L: the least d (paper 32).
        groups: groups of the branch convolutions (``None``: the paper's 32, reduced to
            gcd(32, C) for narrow maps).
        dilate: as the paper, a k x k kernel with k > 3 is a 3 x 3 convolution of dilation
            (k - 1) / 2 (same receptive field); ``False`` uses dense k x k kernels.
        norm_cfg: norm of the branches and of the fuse step (mmcv spelling; default BN).

    Shapes: (B, C, H, W) -> (B, C, H, W). Forms no attention map over positions
    (``return_attn`` is refused). The batch norm of the fuse step needs 2 or more samples in
    training. Cost O(N C^2 k^2 M / groups).

    Catalogue: differs: its fuse step is a plain linear layer, z = W s + b, without the paper's
    BN and ReLU (and its branch and select layers carry biases the paper's formula has not), so its
    branch weights are an affine function of the pooled features; we follow the paper (equal to
    the catalogue with BN + ReLU added to its fuse step and biases at zero)
    """

    layout = MAP
    kind = 'attention'
    paper = 'SKNet (Li et al., CVPR 2019)'
    complexity = 'O(N)'

    def __init__(self, dim: int, kernels: Sequence[int] = (3, 5), reduction: int = 16,
                 groups: Optional[int] = None, L: int = 32, *, dilate: bool = True,
                 norm_cfg: Optional[dict] = None):
        super().__init__()
        check_positive('SKAttention', dim=dim, reduction=reduction, L=L)
        self.kernels = _odd_kernels('SKAttention', kernels)
        self.dim, self.reduction, self.L, self.dilate = dim, reduction, L, dilate
        self.groups = _groups('SKAttention', groups, 32, dim, 'dim')
        self.d = max(dim // reduction, L)
        self.branches = nn.ModuleList(
            nn.Sequential(self._conv(k), build_norm(norm_cfg, dim, MAP), nn.ReLU()) for k in self.kernels)
        self.fc = nn.Conv2d(dim, self.d, 1, bias=False)
        self.fc_norm = build_norm(norm_cfg, self.d, MAP)
        self.select = nn.Conv2d(self.d, len(self.kernels) * dim, 1, bias=False)

    def _conv(self, k: int) -> nn.Conv2d:
        if self.dilate and k > 3:
            rate = (k - 1) // 2
            return nn.Conv2d(self.dim, self.dim, 3, padding=rate, dilation=rate, groups=self.groups, bias=False)
        return nn.Conv2d(self.dim, self.dim, k, padding=k // 2, groups=self.groups, bias=False)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c = x.shape[:2]
        feats = torch.stack([branch(x) for branch in self.branches], dim=1)      # (B, M, C, H, W)
        z = F.relu(self.fc_norm(self.fc(float32_mean(feats.sum(dim=1), (-2, -1)))))  # (B, d, 1, 1)
        weights = float32_softmax(self.select(z).view(b, len(self.kernels), c, 1, 1), dim=1)
        return (feats * weights).sum(dim=1)


# ----------------------------------------------------------------------------- ECA
def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel size, k = |log2(C) / gamma + b / gamma|_odd (Eq. 12 of the paper):
    the odd number nearest to t, ties rounded up (as the official code: int(t), +1 when even)."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@ATTENTION.register_module()
class ECAAttention(AttentionOp):
    r"""Efficient Channel Attention (Wang et al., CVPR 2020, Eq. 10-12): a 1D convolution across channels.

    .. math::
        g = \sigma\big(\mathrm{conv1d}_k(\mathrm{mean}_{H,W}(X))\big),\qquad Y = X \odot g,\qquad
        k = \big|\log_2(C)/\gamma + b/\gamma\big|_{\mathrm{odd}}

    The convolution slides over the C channel means (zero padding (k - 1) / 2, one shared kernel,
    no bias, as the official code). Kind ``gate``: the output is the input re-weighted. PyTorch's
    default Conv1d init.

    Args:
        dim: channels C.
        kernel_size: k (odd); ``None`` (default) adapts it to C as the paper, e.g. 3 for
            C = 64, 5 for C = 256 and 512.
        gamma, b: the paper's mapping constants (2 and 1).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``g`` as (B, C, 1, 1)
    (``gate`` form). Cost O(N C + C k).

    Catalogue: differs: its kernel size is fixed (3 unless given; it never sees C) where the paper
    adapts k to C, and its 1D convolution has a bias the official code has not; we follow the
    paper (equal to the catalogue given our k and without that bias)
    """

    layout = MAP
    kind = 'gate'
    attn_form = 'gate'
    paper = 'ECA-Net (Wang et al., CVPR 2020)'
    complexity = 'O(N)'

    def __init__(self, dim: int, kernel_size: Optional[int] = None, gamma: int = 2, b: int = 1):
        super().__init__()
        check_positive('ECAAttention', dim=dim, gamma=gamma)
        k = eca_kernel_size(dim, gamma, b) if kernel_size is None else kernel_size
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f'ECAAttention: kernel_size must be an odd positive integer or None '
                             f'(adaptive), got {kernel_size!r}')
        self.dim, self.kernel_size, self.gamma, self.b = dim, k, gamma, b
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c = x.shape[:2]
        g = torch.sigmoid(self.conv(float32_mean(x, (-2, -1)).view(b, 1, c))).view(b, c, 1, 1)
        out = x * g
        return (out, g) if return_attn else out


# ----------------------------------------------------------------------------- SGE
@ATTENTION.register_module()
class SpatialGroupEnhance(AttentionOp):
    r"""Spatial Group-wise Enhance (Li, Hu and Yang, 2019, Eq. 1-5): a per-group spatial gate.

    The C channels form G groups; in each, every position's feature vector is compared with the
    group's mean vector, and the similarity map is standardised over the H x W positions:

    .. math::
        c_i = \langle \mathrm{mean}_{H,W}(X_g),\, X_{g,i} \rangle,\quad
        \hat c_i = \frac{c_i - \mathrm{mean}_{i}(c)}{\mathrm{std}_{i}(c) + \epsilon},\quad
        Y_{g,i} = X_{g,i}\,\sigma(\gamma_g \hat c_i + \beta_g)

    with the unbiased std over the N = H W positions i (floored at 1e-10, and taken as 0 for a
    single position, so constant and 1 x 1 maps stay finite) and :math:`\epsilon` = 1e-5, as the
    official code. Initialisation as the official code: :math:`\gamma = 0`, :math:`\beta = 1`.
    Kind ``gate``: the output is the input re-weighted.

    Args:
        dim: channels C.
        groups: G (``None``: the paper's 64, reduced to gcd(64, C) for narrow maps).
        eps: the std offset (official 1e-5).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns the gate as
    (B, C, H, W), each group's (H, W) map repeated over its C / G channels (``gate`` form).
    Cost O(N C).

    Catalogue: differs: it initialises beta to 0 where the official code uses 1 (an untrained
    gate of 0.5 instead of sigmoid(1)), and a 1 x 1 map gives NaN (the unbiased std of one value);
    we follow the official code and keep 1 x 1 maps finite (equal with weights copied otherwise)
    """

    layout = MAP
    kind = 'gate'
    attn_form = 'gate'
    paper = 'SGE (Li et al., 2019)'
    complexity = 'O(N)'

    def __init__(self, dim: int, groups: Optional[int] = None, *, eps: float = 1e-5):
        super().__init__()
        check_positive('SpatialGroupEnhance', dim=dim)
        self.dim, self.eps = dim, eps
        self.groups = _groups('SpatialGroupEnhance', groups, 64, dim, 'dim')
        self.weight = nn.Parameter(torch.zeros(1, self.groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, self.groups, 1, 1))

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        xg = x.view(b, self.groups, c // self.groups, h, w)
        with float32_math(x):
            xf = upcast(xg)
            sim = (xf * xf.mean(dim=(3, 4), keepdim=True)).sum(dim=2).flatten(2)  # (B, G, N)
            sim = sim - sim.mean(dim=-1, keepdim=True)
            var = sim.square().sum(dim=-1, keepdim=True) / max(h * w - 1, 1)
            sim = sim / (var.clamp_min(1e-20).sqrt() + self.eps)
        a = sim.view(b, self.groups, h, w).to(x.dtype) * self.weight + self.bias
        gate = torch.sigmoid(a).unsqueeze(2)                                      # (B, G, 1, H, W)
        out = (xg * gate).view(b, c, h, w)
        if return_attn:
            return out, gate.expand_as(xg).reshape(b, c, h, w)
        return out


# ----------------------------------------------------------------------------- SA-Net
@ATTENTION.register_module()
class ShuffleAttention(AttentionOp):
    r"""Shuffle attention (SA-Net, Zhang and Yang, ICASSP 2021, Eq. 1-4).

    The C channels form G groups; each group splits in two halves, a channel half gated by its
    global mean and a spatial half gated by its own GroupNorm (one channel per norm group, i.e.
    each channel standardised over H x W); the halves are concatenated and the channels shuffled
    across the two halves:

    .. math::
        X'_{k1} = X_{k1} \odot \sigma(w_c\,\mathrm{mean}_{H,W}(X_{k1}) + b_c),\quad
        X'_{k2} = X_{k2} \odot \sigma(w_s\,\mathrm{GN}(X_{k2}) + b_s),\quad
        Y = \mathrm{shuffle}_2\big(\Vert_k [X'_{k1}, X'_{k2}]\big)

    :math:`w_c, b_c, w_s, b_s \in \mathbb{R}^{C/2G}` shared by the groups, initialised 0, 1, 0, 1
    as the official code (GN affine 1, 0). The GroupNorm is part of the formula (per-sample spatial
    statistics), not an exchangeable norm layer, so the op takes no ``norm_cfg``. Kind
    ``attention``: the output is the input re-weighted *and channel-shuffled*, so it is not
    ``x * g`` and no gate is returned (SA-Net places it inside a residual branch, as a head does).

    Args:
        dim: channels C (even).
        groups: G (``None``: the official 64, reduced to gcd(64, C / 2) for narrow maps); 2 G must
            divide C.

    Shapes: (B, C, H, W) -> (B, C, H, W); forms no attention map over positions
    (``return_attn`` is refused). Cost O(N C).

    Catalogue: equal (``ShuffleAttention(channel, G)``; its default G = 8 where the paper uses 64,
    and its ``reduction`` argument is unused)
    """

    layout = MAP
    kind = 'attention'
    paper = 'SA-Net (Zhang & Yang, ICASSP 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, groups: Optional[int] = None):
        super().__init__()
        check_positive('ShuffleAttention', dim=dim)
        if dim % 2:
            raise ValueError(f'ShuffleAttention: dim must be even (each group splits in two halves), got {dim}')
        self.dim = dim
        self.groups = _groups('ShuffleAttention', groups, 64, dim // 2, 'dim // 2')
        half = dim // (2 * self.groups)
        self.cweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.gn = nn.GroupNorm(half, half)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        x0, x1 = x.reshape(b * self.groups, c // self.groups, h, w).chunk(2, dim=1)
        x0 = x0 * torch.sigmoid(self.cweight * float32_mean(x0, (-2, -1)) + self.cbias)
        x1 = x1 * torch.sigmoid(self.sweight * self.gn(x1) + self.sbias)
        out = torch.cat([x0, x1], dim=1).reshape(b, 2, c // 2, h, w)
        return out.transpose(1, 2).reshape(b, c, h, w)                        # channel shuffle, 2 groups


# ----------------------------------------------------------------------------- EPSANet
def _epsa_groups(k: int) -> int:
    """The official group count of a branch: 1 for 3 x 3, else 2^((k-1)/2) (4, 8, 16 for 5, 7, 9)."""
    return 1 if k <= 3 else 2 ** ((k - 1) // 2)


@ATTENTION.register_module()
class PyramidSplitAttention(AttentionOp):
    r"""Pyramid split attention (EPSANet, Zhang et al., 2021, Eq. 1-7), the PSA module.

    S branches convolve the whole input with growing kernels (group counts growing with them),
    each giving C / S channels; one SE weight module, shared by the branches, scores each
    branch's channels, and a softmax across the S branches recalibrates them:

    .. math::
        F_i = \mathrm{conv}_{k_i, G_i}(X),\quad
        Z_i = \sigma\big(W_2\,\mathrm{ReLU}(W_1\,\mathrm{mean}_{H,W}(F_i) + b_1) + b_2\big),\quad
        Y = \Vert_{i} \big(F_i \odot \mathrm{softmax}_{i}(Z_i)\big)

    Softmax over the S branches for every channel (of the SE weights, which are sigmoid outputs,
    as the official code). Convolutions are bias-free, the SE's 1x1 convolutions have biases;
    convolution weights are initialised N(0, 2 / n), n = k^2 x out channels, as the official
    EPSANet. Branches are concatenated in order 0..S-1 (the paper's; the official code concatenates
    them in reverse, a fixed channel permutation). Kind ``attention``: the output is new
    multi-scale features (PSA replaces a 3x3 convolution), not the input re-weighted.

    Args:
        dim: channels C (divisible by S = len(kernels)).
        kernels: odd kernel size per branch (paper (3, 5, 7, 9)).
        groups: group count per branch (``None``: the official (1, 4, 8, 16), 2^((k-1)/2) for
            other k > 3, each reduced to its gcd with C / S for narrow maps).
        reduction: r of the SE weight module (official 16); hidden width ``max(1, C / S // r)``.

    Shapes: (B, C, H, W) -> (B, C, H, W); forms no attention map over positions
    (``return_attn`` is refused). Cost O(N C^2 sum_i k_i^2 / (S G_i)).

    Catalogue: differs: its convolutions and SE blocks sit in plain Python lists, so it registers
    no parameter (an empty state_dict: never trained, moved or saved); it writes the branch outputs
    into a view of its input (the caller's tensor is overwritten, a leaf input that requires grad
    fails, and no backward pass runs: autograd's saved inputs are overwritten); its branches
    convolve C / S-channel splits with one SE block each (bias-free, r = 4) where the official code
    convolves the whole input in groups with one shared SE weight module; we follow the official
    EPSANet
    """

    layout = MAP
    kind = 'attention'
    paper = 'EPSANet (Zhang et al., 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, kernels: Sequence[int] = (3, 5, 7, 9),
                 groups: Optional[Sequence[int]] = None, reduction: int = 16):
        super().__init__()
        name = 'PyramidSplitAttention'
        check_positive(name, dim=dim, reduction=reduction)
        self.kernels = _odd_kernels(name, kernels)
        s = len(self.kernels)
        if dim % s:
            raise ValueError(f'{name}: dim={dim} must be divisible by the number of branches '
                             f'S=len(kernels)={s}')
        self.dim, self.reduction, self.split = dim, reduction, dim // s
        if groups is None:
            self.groups = tuple(_groups(name, None, _epsa_groups(k), self.split, 'dim // S') for k in self.kernels)
        else:
            if len(tuple(groups)) != s:
                raise ValueError(f'{name}: groups needs one entry per kernel ({s}), got {tuple(groups)!r}')
            self.groups = tuple(groups)
            if any(not isinstance(g, int) or g < 1 or self.split % g for g in self.groups):
                raise ValueError(f'{name}: every group count must divide dim // S={self.split} (the '
                                 f'channels in and out of a branch per group), got groups={self.groups!r}')
        self.convs = nn.ModuleList(
            nn.Conv2d(dim, self.split, k, padding=k // 2, groups=g, bias=False)
            for k, g in zip(self.kernels, self.groups))
        hidden = _hidden(self.split, reduction)
        self.fc1 = nn.Conv2d(self.split, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, self.split, 1)
        self.init_weights()

    def init_weights(self) -> None:
        for m in (*self.convs, self.fc1, self.fc2):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        s = len(self.kernels)
        feats = torch.stack([conv(x) for conv in self.convs], dim=1)              # (B, S, C/S, H, W)
        pooled = float32_mean(feats, (-2, -1)).view(b * s, self.split, 1, 1)
        scores = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled)))).view(b, s, self.split, 1, 1)
        return (feats * float32_softmax(scores, dim=1)).reshape(b, c, h, w)


# ----------------------------------------------------------------------------- ParNet
@ATTENTION.register_module()
class ParNetAttention(AttentionOp):
    r"""ParNet's RepVGG-SSE block (Goyal et al., "Non-deep Networks", 2021, Fig. 2).

    Three parallel branches on the input, summed, then SiLU: a 1x1 convolution + BN, a 3x3
    convolution + BN, and the skip branch, BN(X) gated by its Skip-Squeeze-Excitation:

    .. math::
        S = \mathrm{BN}_0(X),\qquad
        Y = \mathrm{SiLU}\Big(\mathrm{BN}_1(W_{1\times1} * X) + \mathrm{BN}_3(W_{3\times3} * X)
        + S \odot \sigma\big(W_{se}\,\mathrm{mean}_{H,W}(S)\big)\Big)

    Convolutions are bias-free (a BN follows, and the SSE's 1x1 convolution has none, as the
    official code). Kind ``block``: the skip branch carries the (normalised) input into the output,
    so a caller adds no identity. PyTorch's default init; norms start at weight 1, bias 0.

    Args:
        dim: channels C.
        norm_cfg: norm of the three branches (mmcv spelling; default BN).

    Shapes: (B, C, H, W) -> (B, C, H, W); forms no attention map (``return_attn`` is refused).
    Cost O(N C^2).

    Catalogue: differs: its skip branch gates the raw input, x * sigmoid(conv(mean(x))), without
    the batch norm of the official SSE branch (and its convolutions carry biases); we follow the
    official code (equal to the catalogue when our skip norm is the identity and biases are zero)
    """

    layout = MAP
    kind = 'block'
    paper = 'ParNet (Goyal et al., 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, *, norm_cfg: Optional[dict] = None):
        super().__init__()
        check_positive('ParNetAttention', dim=dim)
        self.dim = dim
        self.conv1x1 = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), build_norm(norm_cfg, dim, MAP))
        self.conv3x3 = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), build_norm(norm_cfg, dim, MAP))
        self.skip_norm = build_norm(norm_cfg, dim, MAP)
        self.sse = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        skip = self.skip_norm(x)
        skip = skip * torch.sigmoid(self.sse(float32_mean(skip, (-2, -1))))
        return F.silu(self.conv1x1(x) + self.conv3x3(x) + skip)


# ----------------------------------------------------------------------------- S2-MLPv2
def _shift(t: Tensor, axis: int, step: int) -> Tensor:
    """Shift ``t`` by one position along ``axis`` (+1: towards higher indices); the border row
    keeps its own value (the paper's shift copies into the interior only)."""
    n = t.shape[axis]
    if step > 0:
        return torch.cat([t.narrow(axis, 0, 1), t.narrow(axis, 0, n - 1)], dim=axis)
    return torch.cat([t.narrow(axis, 1, n - 1), t.narrow(axis, n - 1, 1)], dim=axis)


def spatial_shift(t: Tensor, order: int) -> Tensor:
    """S2-MLPv2's two spatial shifts of channels-last maps (B, H, W, C), out of place.

    The C channels split in four quarters ([0, C/4), [C/4, C/2), [C/2, 3C/4), [3C/4, C)); shift
    ``order=1`` moves them +1 along H, -1 along H, +1 along W, -1 along W; ``order=2`` moves them
    +1 along W, -1 along W, +1 along H, -1 along H.
    """
    c = t.shape[-1]
    bounds = (0, c // 4, c // 2, c * 3 // 4, c)
    moves = ((1, 1), (1, -1), (2, 1), (2, -1)) if order == 1 else ((2, 1), (2, -1), (1, 1), (1, -1))
    parts = [_shift(t[..., lo:hi], axis, step) for (lo, hi), (axis, step) in zip(zip(bounds, bounds[1:]), moves)]
    return torch.cat(parts, dim=-1)


@ATTENTION.register_module()
class S2Attention(AttentionOp):
    r"""S2-MLPv2's spatial-shift block with split attention (Yu et al., 2021, Algorithm 1).

    A linear layer expands the channels three-fold; two thirds are spatially shifted (two shift
    patterns over channel quarters), the third kept; split attention fuses the three and a linear
    layer projects back:

    .. math::
        [X_1, X_2, X_3] = X W_{in} + b_{in},\quad
        a = \textstyle\sum_{k}\sum_{h,w} \hat X_k,\quad
        \bar a = \mathrm{softmax}_{k}\big(W_2\,\mathrm{GELU}(W_1 a)\big),\quad
        Y = \big(\textstyle\sum_k \bar a_k \odot \hat X_k\big) W_{out} + b_{out}

    with :math:`\hat X_1 = \mathrm{shift}_1(X_1)`, :math:`\hat X_2 = \mathrm{shift}_2(X_2)`,
    :math:`\hat X_3 = X_3`; ``a`` sums over the three branches and the H x W positions (as the
    paper), :math:`W_1 \in \mathbb{R}^{C \times C}`, :math:`W_2 \in \mathbb{R}^{3C \times C}` bias-free;
    the softmax runs across the 3 branches for every channel. Shifts are out of place (each shifted
    value is the neighbour's input value; border rows keep their own). Kind ``attention``: features
    only (S2-MLPv2 adds the residual around it). PyTorch's default Linear init.

    Args:
        dim: channels C.

    Shapes: (B, C, H, W) -> (B, C, H, W); forms no attention map over positions
    (``return_attn`` is refused). Cost O(N C^2).

    Catalogue: differs: its split attention is built for 512 channels whatever ``channels`` is
    (any other width fails with a matmul shape error), and its in-place shifts copy overlapping
    memory, so the +1 shifts smear the first row or column over the whole map instead of moving
    each value by one; we follow the paper (equal to the catalogue with its split attention built
    for our width, on maps whose shifted sides are at most 2 long)
    """

    layout = MAP
    kind = 'attention'
    paper = 'S2-MLPv2 (Yu et al., 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int):
        super().__init__()
        check_positive('S2Attention', dim=dim)
        self.dim = dim
        self.mlp1 = nn.Linear(dim, 3 * dim)
        self.attn_mlp1 = nn.Linear(dim, dim, bias=False)
        self.attn_mlp2 = nn.Linear(dim, 3 * dim, bias=False)
        self.mlp2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c = x.shape[:2]
        t = self.mlp1(x.permute(0, 2, 3, 1))                                    # (B, H, W, 3C)
        branches = torch.stack([spatial_shift(t[..., :c], 1), spatial_shift(t[..., c:2 * c], 2),
                                t[..., 2 * c:]], dim=1)                          # (B, 3, H, W, C)
        with float32_math(branches):
            a = upcast(branches).sum(dim=(1, 2, 3)).to(branches.dtype)          # (B, C)
        logits = self.attn_mlp2(F.gelu(self.attn_mlp1(a))).view(b, 3, 1, 1, c)
        out = (branches * float32_softmax(logits, dim=1)).sum(dim=1)
        return self.mlp2(out).permute(0, 3, 1, 2)
