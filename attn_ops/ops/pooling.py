"""Attention pooling: a map or tokens reduced to one vector per sample (kind ``pool``).

* class-specific residual attention, CSRA (Zhu & Wu, "Residual Attention: A Simple but Effective
  Method for Multi-Label Recognition", ICCV 2021, arXiv:2108.02456).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..layouts import TOKENS, attend_mask, map_to_tokens
from ..registry import ATTENTION
from .base import AttentionOp
from .layers import float32_math, upcast

# the official code's temperatures per head count (its 99 means max pooling, T -> inf)
CSRA_TEMPERATURES = {1: (1.0,), 2: (1.0, math.inf), 4: (1.0, 2.0, 4.0, math.inf),
                     6: (1.0, 2.0, 3.0, 4.0, 5.0, math.inf), 8: (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.inf)}


@ATTENTION.register_module()
class ResidualAttention(AttentionOp):
    r"""Class-specific residual attention pooling (CSRA, Eq. 1-8 and the official multi-head code).

    Each head h scores every position j for every class i with its own classifier
    :math:`m^h_i` (normalised to unit length, as the official code), then adds a class-specific
    attention pooling of the scores to their average (the residual):

    .. math::
        s^h_{ij} = x_j^\top m^h_i / \lVert m^h_i \rVert,\qquad
        y_i = \sum_h \Big(\frac{1}{N}\sum_j s^h_{ij}
        + \lambda \sum_j \mathrm{softmax}_{j}\big(T_h\, s^h_{i\cdot}\big)\, s^h_{ij}\Big)

    softmax over the N positions (tokens, or the H W pixels of a map), one temperature T_h per head;
    T = inf is max pooling (the limit, and the paper's Algorithm 1). Classifiers are bias-free and
    initialised as PyTorch's 1x1 convolution (uniform, fan-in), as the official code.

    Args:
        dim: channels C of the features.
        num_classes: classes (official default 20, VOC 2007).
        lam: lambda, weight of the attention logit (official default 0.1).
        num_heads: heads (1, 2, 4, 6 or 8 with the official temperatures 1; 1, inf; 1, 2, 4, inf;
            1..5, inf; 1..7, inf).
        temperatures: one T per head, overriding the official ones (``math.inf`` = max pooling;
            the official code writes 99 for it).
        normalize: divide each class score by its classifier's norm (official code); ``False`` is
            the paper's Algorithm 1.

    Shapes: ``x`` tokens (B, N, C) with an optional ``mask`` (B, N) (True = real token; padded
    tokens take no part in the mean, the softmax or the max), or a map (B, C, H, W) pooled over its
    H W positions -> logits (B, num_classes); a sample without real tokens gives zeros.
    ``return_attn=True`` also returns the class-specific attention (B, heads, num_classes, N)
    (``dense`` form with the classes as outputs: rows sum to one over the positions; a T = inf head
    gives the one-hot of the max; padded positions exactly zero). Cost O(N C K heads).

    Catalogue: equal (``ResidualAttention`` is the paper's Algorithm 1, one head at T = inf without
    the classifier normalisation: ours with ``temperatures=(math.inf,)``, ``normalize=False``)
    """

    layout = TOKENS
    kind = 'pool'
    supports_mask = True
    attn_form = 'dense'
    paper = 'CSRA (Zhu & Wu, ICCV 2021)'
    complexity = 'O(N)'

    def __init__(self, dim: int, num_classes: int = 20, lam: float = 0.1, num_heads: int = 1, *,
                 temperatures: Optional[Sequence[float]] = None, normalize: bool = True):
        super().__init__()
        if temperatures is None:
            if num_heads not in CSRA_TEMPERATURES:
                raise ValueError(f'ResidualAttention: the official temperatures exist for num_heads in '
                                 f'{sorted(CSRA_TEMPERATURES)}, got {num_heads}; pass temperatures=(T_1, ...)')
            temperatures = CSRA_TEMPERATURES[num_heads]
        temperatures = tuple(float(t) for t in temperatures)
        if len(temperatures) != num_heads or any(not t > 0 for t in temperatures):
            raise ValueError(f'ResidualAttention: expected {num_heads} positive temperatures (one per head), '
                             f'got {temperatures}')
        if num_classes < 1:
            raise ValueError(f'ResidualAttention: num_classes must be >= 1, got {num_classes}')
        self.dim, self.num_classes, self.lam, self.num_heads = dim, num_classes, lam, num_heads
        self.temperatures, self.normalize = temperatures, normalize
        self.classifier = nn.Linear(dim, num_heads * num_classes, bias=False)
        nn.init.kaiming_uniform_(self.classifier.weight, a=math.sqrt(5))   # Conv2d's default, fan-in = dim

    def check_input(self, x: Tensor, mask: Optional[Tensor] = None, return_attn: bool = False) -> None:
        """Tokens as every token op; a map (B, C, H, W) is also taken (pooling ignores the grid)."""
        if not (isinstance(x, Tensor) and x.dim() == 4):
            return super().check_input(x, mask, return_attn)
        name = type(self).__name__
        if x.shape[1] != self.dim:
            msg = (f'{name} expects tokens (B, N, C) with C={self.dim} or a map (B, C, H, W), got '
                   f'({", ".join(map(str, x.shape))})')
            if x.shape[-1] == self.dim:
                msg += '; this looks channels-last (B, H, W, C): permute(0, 3, 1, 2) to a map first'
            raise ValueError(msg)
        if mask is not None:
            raise ValueError(f'{name}: a map has no padding; got a mask of shape {tuple(mask.shape)}. '
                             'Pass tokens (B, N, C) with the mask instead')

    def scores(self, x: Tensor) -> Tensor:
        """Class scores (B, heads, num_classes, N) of tokens ``x`` (B, N, C)."""
        s = self.classifier(x).view(*x.shape[:2], self.num_heads, self.num_classes).permute(0, 2, 3, 1)
        if self.normalize:
            norms = self.classifier.weight.norm(dim=1).view(self.num_heads, self.num_classes, 1)
            s = s / norms
        return s

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        tokens = map_to_tokens(x) if x.dim() == 4 else x
        scores = self.scores(tokens)
        real = mask[:, None, None, :] if mask is not None else None                   # (B, 1, 1, N)
        with float32_math(x):
            s = upcast(scores)                                                        # (B, heads, K, N)
            if real is None:
                base, logits = s.mean(dim=-1), s
            else:      # real tokens only; a sample without any attends to all (zeroed below)
                base = s.masked_fill(~real, 0.0).sum(dim=-1) / real.sum(dim=-1).clamp(min=1)
                logits = s.masked_fill(~attend_mask(real), float('-inf'))
            weights, attended = [], []
            for h, t in enumerate(self.temperatures):
                if math.isinf(t):    # max pooling
                    attended.append(logits[:, h].amax(dim=-1))
                    if return_attn:  # its weights: the one-hot of the (first) max
                        weights.append(torch.zeros_like(s[:, h]).scatter_(
                            -1, logits[:, h].argmax(dim=-1, keepdim=True), 1.0))
                else:
                    w = (logits[:, h] * t).softmax(dim=-1)
                    attended.append((w * s[:, h]).sum(dim=-1))
                    weights.append(w)
            out = (base + self.lam * torch.stack(attended, dim=1)).sum(dim=1)          # (B, K)
            if real is not None:
                out = out.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)             # no real token: 0
        out = out.to(scores.dtype)
        if not return_attn:
            return out
        weights = torch.stack(weights, dim=1)
        if real is not None:
            weights = weights.masked_fill(~real, 0.0)
        return out, weights.to(scores.dtype)
