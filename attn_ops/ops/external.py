"""External attention (Guo et al., "Beyond Self-attention: External Attention using Two Linear
Layers for Visual Tasks", TPAMI 2022, arXiv:2105.02358).

Two small learnable memories replace the keys and values of self-attention, so the cost is
linear in the number of tokens N. The paper's *double normalisation* first takes a softmax over
the N tokens (each memory unit distributes its attention over the input), then an L1
normalisation over the S memory units (each token's row sums to one).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import MAP, attend_mask, zero_padded
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import build_norm, float32_math, upcast


def double_normalize(logits: Tensor, token_dim: int, unit_dim: int, eps: float = 1e-9,
                     mask: Optional[Tensor] = None) -> Tensor:
    """EANet's double normalisation: softmax over tokens, then L1 over memory units (+ ``eps``).

    Computed in float32 whatever the autocast dtype, returned in ``logits.dtype``. ``mask`` is a
    bool tensor broadcastable to ``logits`` (True = real token): padded tokens get no attention and
    their rows are zero. ``eps`` (1e-9, the official code's) keeps a token whose S softmax entries all
    underflow at zero instead of 0/0.
    """
    with float32_math(logits):
        attn = upcast(logits)
        if mask is not None:
            attn = attn.masked_fill(~attend_mask(mask, dim=token_dim), float('-inf'))
        attn = attn.softmax(dim=token_dim)
        if mask is not None:
            attn = attn.masked_fill(~mask, 0.0)
        attn = attn / (attn.sum(dim=unit_dim, keepdim=True) + eps)
    return attn.to(logits.dtype)


@ATTENTION.register_module()
class ExternalAttention(AttentionOp):
    r"""External attention on tokens (EANet, TPAMI 2022, Eq. 5).

    .. math::
        A = \mathrm{L1}_{S}\big(\mathrm{softmax}_{N}(X M_k^\top)\big),\qquad Y = A M_v

    with memories :math:`M_k \in \mathbb{R}^{S \times C}`, :math:`M_v \in \mathbb{R}^{C \times S}`
    (two bias-free linear layers, weights initialised :math:`\mathcal{N}(0, 0.001^2)` as in the
    catalogue). Softmax runs over the N tokens, then each token's S weights are L1-normalised
    (denominator + ``eps``, as the official code).

    Args:
        dim: channels C.
        S: number of memory units (paper default 64).
        eps: L1 denominator offset (official 1e-9).

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool, True = real token -> (B, N, C). Padded tokens
    get no attention weight and zero output. ``return_attn=True`` also returns ``A`` as
    (B, 1, N, S) (``memory`` form; each real token's row sums to one over S). Cost O(N S C).

    Catalogue: differs: no eps in its L1 normalisation, so a token whose S softmax entries all
    underflow (large inputs) gives 0/0 = NaN; we add the official 1e-9 (equal on ordinary inputs)
    """

    kind = 'attention'
    supports_mask = True
    attn_form = 'memory'
    paper = 'EANet (Guo et al., TPAMI 2022)'
    complexity = 'O(N)'

    def __init__(self, dim: int, S: int = 64, *, eps: float = 1e-9):
        super().__init__()
        self.dim, self.S, self.eps = dim, S, eps
        self.mk = nn.Linear(dim, S, bias=False)
        self.mv = nn.Linear(S, dim, bias=False)
        nn.init.normal_(self.mk.weight, std=0.001)
        nn.init.normal_(self.mv.weight, std=0.001)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        m = mask.unsqueeze(-1) if mask is not None else None
        attn = double_normalize(self.mk(x), token_dim=1, unit_dim=2, eps=self.eps, mask=m)
        out = zero_padded(self.mv(attn), mask)
        return (out, attn.unsqueeze(1)) if return_attn else out


@ATTENTION.register_module()
class ExternalAttentionBlock(AttentionOp):
    r"""The official EANet block on maps (``External_attention`` of the EANet segmentation head).

    .. math::
        F = \mathrm{conv}_{1\times1}(X),\quad
        A = \mathrm{L1}_{k}\big(\mathrm{softmax}_{N}(M_k F)\big),\quad
        Y = \mathrm{ReLU}\big(X + \mathrm{norm}(\mathrm{conv}_{1\times1}(M_v A))\big)

    ``M_k`` (Conv1d C->k) and ``M_v`` (Conv1d k->C) are bias-free; ``M_v`` starts as the transpose of
    ``M_k`` (tied at initialisation, trained independently). Softmax over the N = H*W positions,
    then L1 over the k memory units with ``eps`` = 1e-9, as the official code. Convolutions are
    initialised N(0, 2/n) with n = kernel area x out channels, as the official code.

    Args:
        dim: channels C.
        k: memory units (paper default 64).
        norm_cfg: norm config of the output 1x1 conv (``BN``, ``SyncBN``, ``GN``...; mmcv's spelling).
        eps: L1 denominator offset.

    Shapes: (B, C, H, W) -> (B, C, H, W). ``return_attn=True`` also returns ``A`` as (B, 1, N, k),
    N = H*W row-major (``memory`` form; rows sum to one over k). Cost O(N k C).

    Catalogue: no counterpart (the catalogue has only the token form)
    """

    layout = MAP
    kind = 'block'
    attn_form = 'memory'
    paper = 'EANet (Guo et al., TPAMI 2022), official block'
    complexity = 'O(N)'

    def __init__(self, dim: int, k: int = 64, *, norm_cfg: Optional[dict] = None, eps: float = 1e-9):
        super().__init__()
        self.dim, self.k, self.eps = dim, k, eps
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.linear_0 = nn.Conv1d(dim, k, 1, bias=False)
        self.linear_1 = nn.Conv1d(k, dim, 1, bias=False)
        self.conv2 = nn.Conv2d(dim, dim, 1, bias=False)
        self.norm = build_norm(norm_cfg, dim, MAP)
        self.init_weights()

    def init_weights(self) -> None:
        for m in (self.conv1, self.conv2):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        # The official code ties the two memories' storage and initialises the shared tensor last
        # through linear_1 (std sqrt(2 / C)); we copy instead of sharing storage.
        with torch.no_grad():
            nn.init.normal_(self.linear_1.weight, 0.0, math.sqrt(2.0 / self.dim))
            self.linear_0.weight.copy_(self.linear_1.weight.permute(1, 0, 2))
        if getattr(self.norm, 'weight', None) is not None:
            nn.init.ones_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, c, h, w = x.shape
        feat = self.conv1(x).flatten(2)                                  # (B, C, N)
        attn = double_normalize(self.linear_0(feat), token_dim=2, unit_dim=1, eps=self.eps)  # (B, k, N)
        out = self.linear_1(attn).view(b, c, h, w)
        out = F.relu(self.norm(self.conv2(out)) + x)
        return (out, attn.transpose(1, 2).unsqueeze(1)) if return_attn else out


@ATTENTION.register_module()
class MultiHeadExternalAttention(AttentionOp):
    r"""Multi-head external attention, the EAMLP form of EANet (Sec. 3.3 of the paper).

    Tokens are expanded to ``coef * dim`` channels and split into ``num_heads * coef`` heads; each
    head attends to a memory of ``k = 256 // coef`` units:

    .. math::
        A_h = \mathrm{L1}_{k}\big(\mathrm{softmax}_{N}(X_h M_k^\top)\big),\quad
        Y = \mathrm{proj}\big(\Vert_h A_h M_v\big)

    ``M_k``, ``M_v`` are shared across heads (Linear with bias), L1 uses eps 1e-9.

    Args:
        dim: channels C (divisible by ``num_heads``).
        num_heads: heads before expansion (the effective count is ``num_heads * coef``).
        coef: channel expansion (paper 4).
        attn_drop, proj_drop: dropout on the attention map and on the output.
        eps: L1 denominator offset (official 1e-9).

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) -> (B, N, C). ``return_attn=True`` also returns the
    maps (B, num_heads * coef, N, k) before attention dropout (``memory`` form; rows sum to one
    over k). Cost O(N k C coef).

    Catalogue: no counterpart (checked against the official EAMLP code's structure)
    """

    supports_mask = True
    attn_form = 'memory'
    paper = 'EANet (Guo et al., TPAMI 2022), EAMLP multi-head'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_heads: int = 8, coef: int = 4, *, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, eps: float = 1e-9):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'MultiHeadExternalAttention: dim={dim} is not divisible by '
                             f'num_heads={num_heads}')
        if 256 % coef:
            raise ValueError(f'MultiHeadExternalAttention: coef={coef} must divide 256 (k = 256 // coef)')
        self.dim, self.coef, self.eps = dim, coef, eps
        self.num_heads = num_heads * coef
        self.k = 256 // coef
        head_dim = dim * coef // self.num_heads
        self.trans_dims = nn.Linear(dim, dim * coef)
        self.linear_0 = nn.Linear(head_dim, self.k)
        self.linear_1 = nn.Linear(self.k, head_dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim * coef, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        b, n, _ = x.shape
        h = self.trans_dims(x).view(b, n, self.num_heads, -1).transpose(1, 2)   # (B, H, N, d)
        m = mask[:, None, :, None] if mask is not None else None
        attn = double_normalize(self.linear_0(h), token_dim=2, unit_dim=3, eps=self.eps, mask=m)
        out = self.linear_1(self.attn_drop(attn)).transpose(1, 2).reshape(b, n, -1)
        out = zero_padded(self.proj_drop(self.proj(out)), mask)
        return (out, attn) if return_attn else out
