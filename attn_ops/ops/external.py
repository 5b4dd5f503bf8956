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
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from ..layouts import MAP, attend_mask, zero_padded
from ..registry import ATTENTION
from .base import AttentionOp


def double_normalize(logits: Tensor, token_dim: int, unit_dim: int, eps: float = 0.0,
                     mask: Optional[Tensor] = None) -> Tensor:
    """EANet's double normalisation: softmax over tokens, then L1 over memory units.

    ``mask`` is a bool tensor broadcastable to ``logits`` (True = real token). Padded tokens get
    no attention and their rows are left at zero (their L1 denominator is set to one).
    """
    if mask is not None:
        logits = logits.masked_fill(~attend_mask(mask, dim=token_dim), float('-inf'))
    attn = logits.softmax(dim=token_dim)
    denom = attn.sum(dim=unit_dim, keepdim=True)
    if mask is not None:
        attn = attn.masked_fill(~mask, 0.0)
        denom = denom.masked_fill(~mask, 1.0)
    return attn / (denom + eps)


@ATTENTION.register_module()
class ExternalAttention(AttentionOp):
    r"""External attention on tokens (EANet, TPAMI 2022, Eq. 5).

    .. math::
        A = \mathrm{L1}_{S}\big(\mathrm{softmax}_{N}(X M_k^\top)\big),\qquad Y = A M_v

    with memories :math:`M_k \in \mathbb{R}^{S \times C}`, :math:`M_v \in \mathbb{R}^{C \times S}`
    (two bias-free linear layers, weights initialised :math:`\mathcal{N}(0, 0.001^2)` as in the
    catalogue). Softmax runs over the N tokens, then each token's S weights are L1-normalised.

    Args:
        dim: channels C.
        S: number of memory units (paper default 64).

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) bool, True = real token -> (B, N, C).
    Padded tokens get no attention weight and zero output. Cost O(N S C).
    """

    supports_mask = True
    paper = 'EANet (Guo et al., TPAMI 2022)'
    complexity = 'O(N)'

    def __init__(self, dim: int, S: int = 64):
        super().__init__()
        self.dim, self.S = dim, S
        self.mk = nn.Linear(dim, S, bias=False)
        self.mv = nn.Linear(S, dim, bias=False)
        nn.init.normal_(self.mk.weight, std=0.001)
        nn.init.normal_(self.mv.weight, std=0.001)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        self.check_input(x, mask)
        m = mask.unsqueeze(-1) if mask is not None else None
        attn = double_normalize(self.mk(x), token_dim=1, unit_dim=2, mask=m)
        return zero_padded(self.mv(attn), mask)


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
        channels: C.
        k: memory units (paper default 64).
        norm_cfg: mmcv norm config of the output 1x1 conv (``BN``, ``SyncBN``, ``GN``...).
        eps: L1 denominator offset.

    Shapes: (B, C, H, W) -> (B, C, H, W). Cost O(N k C).
    """

    layout = MAP
    dim_arg = 'channels'
    paper = 'EANet (Guo et al., TPAMI 2022), official block'
    complexity = 'O(N)'

    def __init__(self, channels: int, k: int = 64, norm_cfg: Optional[dict] = None, eps: float = 1e-9):
        super().__init__()
        self.channels, self.k, self.eps = channels, k, eps
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.linear_0 = nn.Conv1d(channels, k, 1, bias=False)
        self.linear_1 = nn.Conv1d(k, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)
        self.norm = build_norm_layer(norm_cfg or dict(type='BN'), channels)[1]
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
            nn.init.normal_(self.linear_1.weight, 0.0, math.sqrt(2.0 / self.channels))
            self.linear_0.weight.copy_(self.linear_1.weight.permute(1, 0, 2))
        if getattr(self.norm, 'weight', None) is not None:
            nn.init.ones_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        identity = x
        b, c, h, w = x.shape
        feat = self.conv1(x).flatten(2)                                  # (B, C, N)
        attn = double_normalize(self.linear_0(feat), token_dim=2, unit_dim=1, eps=self.eps)
        out = self.linear_1(attn).view(b, c, h, w)
        out = self.norm(self.conv2(out))
        return F.relu(out + identity)


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

    Shapes: ``x`` (B, N, C), ``mask`` (B, N) -> (B, N, C). Cost O(N k C coef).
    """

    supports_mask = True
    paper = 'EANet (Guo et al., TPAMI 2022), EAMLP multi-head'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_heads: int = 8, coef: int = 4, attn_drop: float = 0.0,
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

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        self.check_input(x, mask)
        b, n, _ = x.shape
        h = self.trans_dims(x).view(b, n, self.num_heads, -1).transpose(1, 2)   # (B, H, N, d)
        m = mask[:, None, :, None] if mask is not None else None
        attn = double_normalize(self.linear_0(h), token_dim=2, unit_dim=3, eps=self.eps, mask=m)
        attn = self.attn_drop(attn)
        out = self.linear_1(attn).transpose(1, 2).reshape(b, n, -1)
        return zero_padded(self.proj_drop(self.proj(out)), mask)
