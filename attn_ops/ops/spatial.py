"""Spatial and channel-spatial gates: attention maps over positions (and channels) that re-weight the input.

* CBAM, convolutional block attention (Woo et al., ECCV 2018, arXiv:1807.06521);
* BAM, bottleneck attention (Park et al., BMVC 2018, arXiv:1807.06514);
* SimAM, parameter-free energy attention (Yang et al., ICML 2021, PMLR 139:11863);
* Triplet attention (Misra et al., WACV 2021, arXiv:2010.03045);
* Coordinate attention (Hou et al., CVPR 2021, arXiv:2103.02907);
* Polarized self-attention (Liu et al., 2021, arXiv:2107.00782).

Every op here is a ``gate`` on maps (B, C, H, W) of any size: ``y = x * g``, and
``return_attn=True`` returns ``g`` broadcast to the input's shape (B, C, H, W). Where the paper
applies two gates one after the other (CBAM, sequential PSA), ``g`` is their product. No op mixes
samples of a batch (batch norms aside, in training).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import MAP, TOKENS
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import build_norm, check_positive, float32_math, float32_mean, float32_softmax, upcast


def _odd(op: str, name: str, k) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0:
        raise ValueError(f'{op}: {name} must be an odd positive integer (a centred kernel), got {k!r}')


def _gated(x: Tensor, g: Tensor, return_attn: bool):
    """``x * g``, and ``g`` broadcast to ``x``'s shape when ``return_attn``."""
    out = x * g
    return (out, g.expand_as(x)) if return_attn else out


# ----------------------------------------------------------------------------- CBAM
@ATTENTION.register_module()
class CBAM(AttentionOp):
    r"""Convolutional block attention module (Woo et al., ECCV 2018, Eq. 1-3): a channel gate, then a
    spatial gate on the channel-refined map.

    .. math::
        M_c = \sigma\big(W_1 \mathrm{ReLU}(W_0\,\mathrm{avg}_{H,W} X) + W_1 \mathrm{ReLU}(W_0 \max_{H,W} X)\big),\
        X' = M_c \odot X,\
        M_s = \sigma\big(f^{k \times k}([\mathrm{avg}_C X';\ \max_C X'])\big),\ Y = M_s \odot X'

    The shared MLP :math:`W_0 \in \mathbb{R}^{C/r \times C}`, :math:`W_1 \in \mathbb{R}^{C \times C/r}`
    is bias-free as Eq. 2 (the official code gives both layers a bias); the channel descriptors pool
    over the H x W positions, the spatial descriptors over the C channels of each position, stacked
    [avg; max] as Eq. 3; :math:`f` is a k x k convolution 2 -> 1 with zero padding k // 2 and a bias
    (the official bias-free convolution + BN is the same map at inference). Kind ``gate``:
    ``y = x * g`` with :math:`g = M_c M_s \in (0, 1)`, the product of the two sequential gates (in
    CBAM-ResNet the block adds its own identity outside the module). PyTorch's default init (the
    paper states none).

    Args:
        dim: channels C.
        reduction: r (paper 16); the hidden width is ``max(1, C // r)``.
        kernel_size: k of the spatial gate (paper 7; odd).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``g`` as (B, C, H, W)
    (``gate`` form: :math:`M_c` (B, C, 1, 1) times :math:`M_s` (B, 1, H, W)). Cost O(N C + C^2 / r).

    Catalogue: differs: its ``CBAMBlock`` returns F'' + F, adding its own input to the refined
    map, where the CBAM module outputs F'' (CBAM-ResNet adds the block's identity outside the
    module); its default spatial kernel is 49 x 49 where the paper's is 7 x 7, and its MLP fails
    below 16 channels (C // r = 0); we follow the paper (equal to the catalogue's output minus its
    input, given our kernel size; its spatial convolution reads the planes as [max; avg])
    """

    layout = MAP
    kind = 'gate'
    attn_form = 'gate'
    paper = 'CBAM (Woo et al., ECCV 2018)'
    complexity = 'O(N)'

    def __init__(self, dim: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        check_positive('CBAM', dim=dim, reduction=reduction)
        _odd('CBAM', 'kernel_size', kernel_size)
        self.dim, self.reduction, self.kernel_size = dim, reduction, kernel_size
        hidden = max(1, dim // reduction)
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        pooled = torch.stack([float32_mean(x, (2, 3), keepdim=False), x.amax(dim=(2, 3))], dim=1)  # (B, 2, C)
        mc = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))).sum(dim=1))[:, :, None, None]
        refined = x * mc
        planes = torch.cat([float32_mean(refined, 1), refined.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        ms = torch.sigmoid(self.conv(planes))                                                      # (B, 1, H, W)
        out = refined * ms                  # no (B, C, H, W) gate kept for backward unless it is asked for
        return (out, (mc * ms).expand_as(x)) if return_attn else out


# ----------------------------------------------------------------------------- BAM
@ATTENTION.register_module()
class BAM(AttentionOp):
    r"""Bottleneck attention module (Park et al., BMVC 2018, Eq. 1-4): a channel and a spatial
    branch summed into one gate, applied residually.

    .. math::
        M_c = \mathrm{BN}\big(\mathrm{MLP}(\mathrm{avg}_{H,W} X)\big),\
        M_s = \mathrm{BN}\big(f_3^{1 \times 1} f_2^{3 \times 3, d} f_1^{3 \times 3, d} f_0^{1 \times 1} X\big),\
        Y = X + X \odot \sigma(M_c + M_s) = X \odot \big(1 + \sigma(M_c + M_s)\big)

    The MLP has one hidden layer of C / r units; the spatial branch reduces C to C / r (:math:`f_0`),
    runs two 3 x 3 convolutions of dilation d padded by d (the map keeps its size) and projects to
    one plane (:math:`f_3`). Hidden layers are followed by BN + ReLU as the official code (the
    paper's formula leaves them implicit); each branch ends in the paper's BN, which the official
    code leaves out. :math:`M_c` (B, C, 1, 1) and :math:`M_s` (B, 1, H, W) broadcast to (B, C, H, W);
    their sum goes through the sigmoid as Eq. 2 (the official code multiplies them instead).
    Linear and convolution layers carry biases. Kind ``gate`` (our choice): BAM's output is its
    input re-weighted by :math:`g = 1 + \sigma(M_c + M_s) \in (1, 2)`, the identity included in
    ``g``, so a head adds none. PyTorch's default init; norms start at weight 1, bias 0.

    Args:
        dim: channels C.
        reduction: r (paper 16); the hidden width is ``max(1, C // r)``.
        dilation: d of the spatial branch (paper 4).
        norm_cfg: the norms (mmcv spelling; default BN). The channel branch's norms see one value
            per sample, so batch statistics need 2 or more samples in training.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``g`` as (B, C, H, W)
    (``gate`` form, values in (1, 2)). Cost O(N C^2 / r).

    Catalogue: differs: its dilated 3 x 3 convolutions have padding 1 at dilation 2, so each shrinks
    the map by 2: it runs on 7 x 7 maps only (any other size fails in a convolution or in
    ``expand_as``), and there its spatial gate is 1 x 1, constant over positions; its MLP has three
    hidden layers and its spatial branch three convolutions of dilation 2, neither closed by a BN,
    where the paper has one hidden layer, two convolutions of dilation 4 and a BN closing each
    branch; we follow the paper (equal to the catalogue rebuilt with the paper's layers, padded by d)
    """

    layout = MAP
    kind = 'gate'
    attn_form = 'gate'
    paper = 'BAM (Park et al., BMVC 2018)'
    complexity = 'O(N)'

    def __init__(self, dim: int, reduction: int = 16, dilation: int = 4, *, norm_cfg: Optional[dict] = None):
        super().__init__()
        check_positive('BAM', dim=dim, reduction=reduction, dilation=dilation)
        self.dim, self.reduction, self.dilation = dim, reduction, dilation
        hidden = max(1, dim // reduction)
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden), build_norm(norm_cfg, hidden, TOKENS), nn.ReLU(),
            nn.Linear(hidden, dim), build_norm(norm_cfg, dim, TOKENS))
        layers = [nn.Conv2d(dim, hidden, 1), build_norm(norm_cfg, hidden, MAP), nn.ReLU()]
        for _ in range(2):
            layers += [nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
                       build_norm(norm_cfg, hidden, MAP), nn.ReLU()]
        layers += [nn.Conv2d(hidden, 1, 1), build_norm(norm_cfg, 1, MAP)]
        self.spatial = nn.Sequential(*layers)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        mc = self.channel(float32_mean(x, (2, 3), keepdim=False))[:, :, None, None]    # (B, C, 1, 1)
        return _gated(x, 1 + torch.sigmoid(mc + self.spatial(x)), return_attn)


# ----------------------------------------------------------------------------- SimAM
@ATTENTION.register_module()
class SimAM(AttentionOp):
    r"""SimAM (Yang et al., ICML 2021, Sec. 3 and its Alg. 1): a parameter-free gate from each
    neuron's minimal energy within its channel.

    .. math::
        \frac{1}{e_t} = \frac{(x_t - \mu)^2}{4(\hat\sigma^2 + \lambda)} + \frac{1}{2},\quad
        \mu = \mathrm{mean}_{H,W}\,x,\quad \hat\sigma^2 = \frac{1}{n}\textstyle\sum_{H,W}(x - \mu)^2,\quad
        Y = X \odot \sigma(1 / e)

    Mean and variance run over the H x W positions of each sample and channel, with
    n = H W - 1 as Alg. 1 (floored at 1, so a 1 x 1 map is finite). Kind ``gate``:
    :math:`g = \sigma(1/e) \in [\sigma(1/2), 1)`, one value per element. No parameters.

    Args:
        dim: channels C (checked against the input; SimAM has no weights).
        e_lambda: the regulariser :math:`\lambda` (paper 1e-4), > 0.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``g`` as (B, C, H, W)
    (``gate`` form). Cost O(N C).

    Catalogue: differs: on a 1 x 1 map n = H W - 1 = 0 and its variance is 0 / 0 = NaN (as the
    official code); we floor n at 1, so a 1 x 1 map is gated by sigmoid(1/2) (equal on every
    larger map)
    """

    layout = MAP
    kind = 'gate'
    attn_form = 'gate'
    paper = 'SimAM (Yang et al., ICML 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, e_lambda: float = 1e-4):
        super().__init__()
        check_positive('SimAM', dim=dim)
        if not isinstance(e_lambda, (int, float)) or isinstance(e_lambda, bool) or not e_lambda > 0:
            raise ValueError(f'SimAM: e_lambda must be a positive number (it keeps a constant channel '
                             f'finite), got {e_lambda!r}')
        self.dim, self.e_lambda = dim, float(e_lambda)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        n = max(x.shape[2] * x.shape[3] - 1, 1)
        with float32_math(x):
            xf = upcast(x)
            d = (xf - xf.mean(dim=(2, 3), keepdim=True)).square()
            inv_energy = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
            g = torch.sigmoid(inv_energy).to(x.dtype)
        return _gated(x, g, return_attn)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, e_lambda={self.e_lambda}'


# ----------------------------------------------------------------------------- triplet attention
def _zpool(x: Tensor, dim: int) -> Tensor:
    """Z-pool: [max; mean] over ``dim``, stacked as two planes at axis 1."""
    return torch.stack([x.amax(dim=dim), float32_mean(x, dim, keepdim=False)], dim=1)


@ATTENTION.register_module()
class TripletAttention(AttentionOp):
    r"""Triplet attention (Misra et al., WACV 2021, Sec. 3.2): one Z-pool gate per pair of axes of
    (C, H, W), the three averaged.

    .. math::
        Z_a(X) = [\max_a X;\ \mathrm{mean}_a X],\quad
        g_{CW} = \sigma(\mathrm{BN}(f_1 Z_H X)),\ g_{HC} = \sigma(\mathrm{BN}(f_2 Z_W X)),\
        g_{HW} = \sigma(\mathrm{BN}(f_3 Z_C X)),\quad Y = X \odot \tfrac{1}{3}(g_{CW} + g_{HC} + g_{HW})

    Each branch pools one axis away (Z-pool: max and mean over it) and runs its own k x k
    convolution (2 -> 1 planes, bias-free, zero padding k // 2) over the remaining two axes, then a
    one-plane BN (official: momentum 0.01) and a sigmoid; the gates broadcast as (B, C, 1, W),
    (B, C, H, 1) and (B, 1, H, W). ``no_spatial=True`` drops :math:`g_{HW}` and averages the other
    two, as the official option. Kind ``gate``: :math:`g \in (0, 1)`. PyTorch's default init.

    Args:
        dim: channels C (checked against the input; the weights do not depend on it).
        kernel_size: k (paper 7; odd).
        no_spatial: drop the (H, W) branch.
        norm_cfg: the one-plane norms (mmcv spelling; default ``dict(type='BN', momentum=0.01)``).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``g`` as (B, C, H, W)
    (``gate`` form). Cost O(N C + N k^2).

    Catalogue: equal (``TripletAttention(no_spatial)``, the official code; kernel 7)
    """

    layout = MAP
    kind = 'gate'
    attn_form = 'gate'
    paper = 'Triplet attention (Misra et al., WACV 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, kernel_size: int = 7, *, no_spatial: bool = False,
                 norm_cfg: Optional[dict] = None):
        super().__init__()
        check_positive('TripletAttention', dim=dim)
        _odd('TripletAttention', 'kernel_size', kernel_size)
        self.dim, self.kernel_size, self.no_spatial = dim, kernel_size, bool(no_spatial)
        norm_cfg = norm_cfg if norm_cfg is not None else dict(type='BN', momentum=0.01)

        def gate():
            return nn.Sequential(nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False),
                                 build_norm(norm_cfg, 1, MAP))
        self.cw, self.hc = gate(), gate()
        self.hw = None if self.no_spatial else gate()

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        g = torch.sigmoid(self.cw(_zpool(x, 2))).transpose(1, 2)                          # (B, C, 1, W)
        g = g + torch.sigmoid(self.hc(_zpool(x, 3).transpose(2, 3))).permute(0, 3, 2, 1)  # + (B, C, H, 1)
        if self.hw is None:
            return _gated(x, g / 2, return_attn)
        return _gated(x, (g + torch.sigmoid(self.hw(_zpool(x, 1)))) / 3, return_attn)  # + (B, 1, H, W)


# ----------------------------------------------------------------------------- coordinate attention
@ATTENTION.register_module()
class CoordAttention(AttentionOp):
    r"""Coordinate attention (Hou et al., CVPR 2021, Sec. 3.2): gates along H and along W from
    direction-aware pooled features.

    .. math::
        z^h = \mathrm{mean}_{W} X,\ z^w = \mathrm{mean}_{H} X,\quad
        [f^h; f^w] = \delta\big(\mathrm{BN}(F_1 [z^h; z^w])\big),\quad
        Y = X \odot \sigma(F_h f^h) \odot \sigma(F_w f^w)

    :math:`F_1` is a 1x1 convolution C -> m, :math:`m = \max(8, C / r)`, over the H + W pooled
    positions concatenated (one BN over both, as the official code), :math:`\delta` h-swish
    (:math:`x\,\mathrm{ReLU6}(x + 3) / 6`); :math:`F_h, F_w` are 1x1 convolutions m -> C; every
    convolution has a bias. Kind ``gate``: :math:`g = \sigma(F_h f^h)\,\sigma(F_w f^w) \in (0, 1)`,
    a (B, C, H, 1) gate times a (B, C, 1, W) gate. PyTorch's default init.

    Args:
        dim: channels C.
        reduction: r (paper 32); m = max(8, C // r).
        norm_cfg: the norm after :math:`F_1` (mmcv spelling; default BN).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``g`` as (B, C, H, W)
    (``gate`` form). Cost O(N C + (H + W) C m).

    Catalogue: equal (``CoordAtt(inp, oup, reduction)`` with inp = oup = C, the official code)
    """

    layout = MAP
    kind = 'gate'
    attn_form = 'gate'
    paper = 'Coordinate attention (Hou et al., CVPR 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, reduction: int = 32, *, norm_cfg: Optional[dict] = None):
        super().__init__()
        check_positive('CoordAttention', dim=dim, reduction=reduction)
        self.dim, self.reduction = dim, reduction
        self.mid = max(8, dim // reduction)
        self.conv1 = nn.Conv2d(dim, self.mid, 1)
        self.norm = build_norm(norm_cfg, self.mid, MAP)
        self.conv_h = nn.Conv2d(self.mid, dim, 1)
        self.conv_w = nn.Conv2d(self.mid, dim, 1)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        h, w = x.shape[2:]
        pooled = torch.cat([float32_mean(x, 3), float32_mean(x, 2).transpose(2, 3)], dim=2)   # (B, C, H + W, 1)
        fh, fw = F.hardswish(self.norm(self.conv1(pooled))).split([h, w], dim=2)
        g = torch.sigmoid(self.conv_h(fh)) * torch.sigmoid(self.conv_w(fw.transpose(2, 3)))  # (B, C, H, W)
        return _gated(x, g, return_attn)


# ----------------------------------------------------------------------------- polarized self-attention
@ATTENTION.register_module()
class PolarizedSelfAttention(AttentionOp):
    r"""Polarized self-attention (Liu et al., 2021, Sec. 3): a channel-only and a spatial-only
    gate, in parallel or in sequence.

    .. math::
        A^{ch} = \sigma\big(\mathrm{LN}_C(W_z \textstyle\sum_j p_j (W_v X)_j)\big),\ p = \mathrm{softmax}_j(W_q X),\
        A^{sp}_j = \sigma\big(\textstyle\sum_c q_c (W'_v X)_{cj}\big),\ q = \mathrm{softmax}_c(\bar{W'_q X})

    .. math::
        \text{parallel: } Y = A^{ch}(X) \odot X + A^{sp}(X) \odot X,\qquad
        \text{sequential: } Y = A^{sp}(X') \odot X',\ X' = A^{ch}(X) \odot X

    Channel-only branch: :math:`W_q` (C -> 1) scores the N = H W positions, softmax over the
    positions j, pooling :math:`W_v X` (C -> C/2); :math:`W_z` (C/2 -> C), LayerNorm over the C
    channels, sigmoid: (B, C, 1, 1). Spatial-only branch: :math:`\bar{W'_q X}`, the mean of
    :math:`W'_q X` (C -> C/2) over the positions, softmax over its C/2 channels c, weighting
    :math:`W'_v X` (C -> C/2) at every position, sigmoid: (B, 1, H, W). All are 1x1 convolutions
    with biases. Computed without the
    (C/2, N) value maps: the softmax weights sum to one and the convolutions are affine, so the
    pooled input goes through :math:`W_v`, and :math:`W'_v` folds into one weight per channel
    (the same numbers as the formula, tested). The paper's form, not the official code's (which
    has no LayerNorm and takes its spatial softmax over positions). Kind ``gate``:
    :math:`g = A^{ch} + A^{sp} \in (0, 2)` (parallel) or :math:`g = A^{ch} A^{sp}(X') \in (0, 1)`
    (sequential). PyTorch's default init.

    Args:
        dim: channels C (at least 2).
        mode: ``'parallel'`` (PSA_p, default) or ``'sequential'`` (PSA_s).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``g`` as (B, C, H, W)
    (``gate`` form). Cost O(N C + C^2).

    Catalogue: equal (``ParallelPolarizedSelfAttention(channel)`` /
    ``SequentialPolarizedSelfAttention(channel)``)
    """

    layout = MAP
    kind = 'gate'
    attn_form = 'gate'
    paper = 'Polarized self-attention (Liu et al., 2021)'
    complexity = 'O(N)'
    MODES = ('parallel', 'sequential')

    def __init__(self, dim: int, mode: str = 'parallel'):
        super().__init__()
        check_positive('PolarizedSelfAttention', dim=dim)
        if dim < 2:
            raise ValueError(f'PolarizedSelfAttention: dim must be at least 2 (its branches use C // 2 '
                             f'channels), got {dim}')
        if mode not in self.MODES:
            raise ValueError(f'PolarizedSelfAttention: mode must be one of {self.MODES}, got {mode!r}')
        self.dim, self.mode = dim, mode
        half = dim // 2
        self.ch_wv = nn.Conv2d(dim, half, 1)
        self.ch_wq = nn.Conv2d(dim, 1, 1)
        self.ch_wz = nn.Conv2d(half, dim, 1)
        self.ln = nn.LayerNorm(dim)
        self.sp_wv = nn.Conv2d(dim, half, 1)
        self.sp_wq = nn.Conv2d(dim, half, 1)

    def channel_gate(self, x: Tensor) -> Tensor:
        """:math:`A^{ch}(x)`: (B, C, H, W) -> (B, C, 1, 1)."""
        b, c = x.shape[:2]
        p = float32_softmax(self.ch_wq(x).flatten(2), dim=-1)                    # (B, 1, N): over positions
        pooled = torch.einsum('bcn,bn->bc', x.flatten(2), p[:, 0].to(x.dtype))   # softmax-weighted input
        z = self.ch_wz(self.ch_wv(pooled[:, :, None, None])).flatten(1)          # (B, C)
        with float32_math(z):
            z = self.ln(upcast(z)).to(z.dtype)
        return torch.sigmoid(z).view(b, c, 1, 1)

    def spatial_gate(self, x: Tensor) -> Tensor:
        """:math:`A^{sp}(x)`: (B, C, H, W) -> (B, 1, H, W)."""
        b, _, h, w = x.shape
        q = float32_softmax(self.sp_wq(float32_mean(x, (2, 3))).flatten(1), dim=-1)   # (B, C/2): over channels
        wv = self.sp_wv.weight.flatten(1)                                              # (C/2, C)
        weight = (q @ wv.to(q.dtype)).to(x.dtype)                                     # (B, C)
        bias = (q @ self.sp_wv.bias.to(q.dtype)).to(x.dtype)                          # (B,)
        logits = torch.einsum('bc,bchw->bhw', weight, x) + bias[:, None, None]
        return torch.sigmoid(logits).unsqueeze(1)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        a_ch = self.channel_gate(x)                 # (B, C, 1, 1)
        if self.mode == 'parallel':                 # products with the small gates: no (B, C, H, W) gate
            a_sp = self.spatial_gate(x)             # kept for backward
            out = x * a_ch + x * a_sp
        else:
            refined = x * a_ch
            a_sp = self.spatial_gate(refined)
            out = refined * a_sp
        if not return_attn:
            return out
        return out, (a_ch + a_sp if self.mode == 'parallel' else a_ch * a_sp).expand_as(x)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, mode={self.mode}'
