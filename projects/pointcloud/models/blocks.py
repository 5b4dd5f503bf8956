"""Building blocks of the PCT family, on dense point tokens ``(B, N, C)`` with padding masks.

Point-wise layers run on the real points only (``x[mask]``), so batch-norm statistics and
outputs never see padding: a ragged PyG batch behaves as the same clouds batched densely.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from attn_ops import adds_identity, build_attention
from attn_ops.layouts import TOKENS, LayoutAdapter, as_layout, masked_apply, takes_positions, zero_padded
from attn_ops.point_ops import farthest_point_sample, gather_points, group_points, knn


def masked_max(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Max over tokens ``(B, N, C) -> (B, C)`` ignoring padding."""
    if mask is not None:
        x = x.masked_fill(~mask.unsqueeze(-1), float('-inf'))
    return x.max(dim=1).values


def masked_mean(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Mean over tokens ``(B, N, C) -> (B, C)`` ignoring padding."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class LBR(nn.Module):
    """Linear (no bias) + BatchNorm over channels + activation, on rows ``(M, C_in) -> (M, C_out)``.

    The 1x1 ``Conv1d`` + ``BatchNorm1d`` + ReLU of PCT, written on tokens.
    """

    def __init__(self, in_channels: int, out_channels: int, act: str = 'relu', bias: bool = False):
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels, bias=bias)
        self.norm = nn.BatchNorm1d(out_channels)
        if act == 'relu':
            self.act = nn.ReLU(inplace=True)
        elif act == 'leaky_relu':
            self.act = nn.LeakyReLU(0.2, inplace=True)
        elif act in (None, 'none'):
            self.act = nn.Identity()
        else:
            raise ValueError(f'LBR: act must be relu, leaky_relu or none, got {act!r}')

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.linear(x)))


def mlp(channels: Sequence[int], act: str = 'relu') -> nn.Sequential:
    """A stack of :class:`LBR` through ``channels`` (``[c0, c1, ..., ck]``)."""
    return nn.Sequential(*[LBR(a, b, act) for a, b in zip(channels[:-1], channels[1:])])


class NeighborEmbeddingStage(nn.Module):
    r"""One sample-and-group stage of PCT's neighbour embedding (``Local_op``).

    S centres by farthest point sampling, K nearest neighbours of each centre (on xyz), grouped
    features :math:`[f_j - f_c, f_c]`, two LBR layers, max over the K neighbours.

    Shapes: pos ``(B, N, 3)``, feat ``(B, N, C)``, mask ``(B, N)`` ->
    pos ``(B, S, 3)``, feat ``(B, S, C_out)``, mask ``(B, S)``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_samples: int, k: int):
        super().__init__()
        self.num_samples, self.k = num_samples, k
        self.mlp = mlp([2 * in_channels, out_channels, out_channels])

    def forward(self, pos: Tensor, feat: Tensor, mask: Optional[Tensor]):
        b = pos.shape[0]
        idx = farthest_point_sample(pos, self.num_samples, mask)
        new_pos = gather_points(pos, idx)
        nb = knn(new_pos, pos, self.k, ref_mask=mask)
        grouped = group_points(feat, idx, nb)                      # (B, S, K, 2C)
        if mask is None:
            new_mask = None
            rows = grouped.reshape(-1, grouped.shape[-1])
            y = self.mlp(rows).view(b, self.num_samples, self.k, -1).max(dim=2).values
        else:
            counts = mask.sum(1, keepdim=True)
            new_mask = torch.arange(self.num_samples, device=pos.device).unsqueeze(0) < counts
            g = grouped[new_mask]                                 # (M, K, 2C)
            y_real = self.mlp(g.reshape(-1, g.shape[-1])).view(g.shape[0], self.k, -1).max(1).values
            y = y_real.new_zeros(b, self.num_samples, y_real.shape[-1])
            y[new_mask] = y_real
        return new_pos, y, new_mask


class AttentionBlock(nn.Module):
    r"""A token op from ATTENTION inside PCT's layer structure.

    The op's ``kind`` decides the structure (``mode='auto'``):

    * ``block`` and ``gate`` ops are the whole layer (OffsetAttention carries its own offset, norm
      and residual): ``y = op(x)`` (``mode='none'``);
    * ``attention`` ops get PCT's offset structure
      :math:`y = x + \mathrm{LBR}(x - \mathrm{op}(x))` (``mode='offset'``, as EANet's point-cloud
      experiment does with External Attention), or naive PCT's
      :math:`y = x + \mathrm{LBR}(\mathrm{op}(x))` with ``mode='residual'`` (Eq. 4).

    ``mode='none'`` on an ``attention`` op is allowed (no identity); ``offset`` or ``residual`` on a
    ``block`` or ``gate`` op raise (the identity would be added twice). Map ops run on the points
    through the layout adapter as an N x 1 map (equal-size clouds only: a map has no padding).
    An op whose ``forward`` takes ``pos=`` (PointTransformerAttention) is given the points' positions.

    Shapes: ``x`` (B, N, C), ``mask`` (B, N), ``pos`` (B, N, 3) -> (B, N, C), zeros at padding.
    """

    MODES = ('auto', 'none', 'offset', 'residual')

    def __init__(self, attn_cfg: dict, channels: int, mode: str = 'auto'):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f'AttentionBlock: mode must be one of {self.MODES}, got {mode!r}')
        self.attn = as_layout(build_attention(attn_cfg, dim=channels), TOKENS)
        requested = None if mode == 'auto' else mode != 'none'
        if adds_identity(self.attn, requested, 'AttentionBlock'):
            mode = 'offset' if mode == 'auto' else mode
        else:
            mode = 'none'
        self.mode = mode
        self.takes_pos = takes_positions(self.attn)
        self.post = LBR(channels, channels, bias=True) if mode != 'none' else None

    def _attend(self, x: Tensor, mask: Optional[Tensor], pos: Optional[Tensor]) -> Tensor:
        if self.takes_pos:
            return self.attn(x, mask=mask, pos=pos)
        if self.attn.supports_mask:
            return self.attn(x, mask=mask)
        if mask is not None and not bool(mask.all()):
            name = type(getattr(self.attn, 'op', self.attn)).__name__
            raise ValueError(f'{name} does not support padding masks; use equal-size clouds '
                             '(FixedPoints transform) or a mask-aware op')
        if isinstance(self.attn, LayoutAdapter):
            return self.attn(x, hw=(x.shape[1], 1))
        return self.attn(x)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, pos: Optional[Tensor] = None) -> Tensor:
        y = self._attend(x, mask, pos)
        if self.mode == 'none':
            return zero_padded(y, mask)
        z = x - y if self.mode == 'offset' else y
        return zero_padded(x + masked_apply(self.post, z, mask), mask)


class AttentionStack(nn.Module):
    """``num_layers`` attention blocks applied in sequence (each given the points' ``pos``); returns
    their outputs concatenated ``(B, N, num_layers * C)`` (PCT's ``pt_last``)."""

    def __init__(self, channels: int, num_layers: int, attn_cfg: dict, mode: str = 'auto'):
        super().__init__()
        self.layers = nn.ModuleList(AttentionBlock(attn_cfg, channels, mode) for _ in range(num_layers))

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, pos: Optional[Tensor] = None) -> Tensor:
        outs = []
        for layer in self.layers:
            x = layer(x, mask, pos)
            outs.append(x)
        return torch.cat(outs, dim=-1)
