"""Small layers the ops share: a learnable scale, a norm builder, float32 reductions under autocast,
and the check of positive integer arguments.

Everything here needs torch alone (``import attn_ops`` must not pull mmcv); the norm configs use
mmcv's spelling (``dict(type='SyncBN', requires_grad=True)``) so an mmseg config's ``norm_cfg`` can
be handed to an op unchanged.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import Tensor, nn

from ..layouts import MAP, TOKENS


class Scale(nn.Module):
    """A learnable scalar ``y = scale * x`` (mmcv's ``Scale``; ``Scale(0.0)`` starts a branch closed)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


_BATCH_NORMS = {'BN', 'BN1d', 'BN2d', 'BN3d', 'SyncBN'}


def build_norm(cfg: Optional[dict], dim: int, layout: str) -> nn.Module:
    """A norm layer over ``dim`` channels for ``layout`` from an mmcv-style config.

    ``type``: ``BN`` / ``BN1d`` / ``BN2d`` / ``SyncBN`` (batch statistics), ``GN`` (needs
    ``num_groups``), ``LN``, ``IN``; other keys (``eps``, ``momentum``, ``affine``...) go to the torch
    layer, ``requires_grad=False`` freezes its affine parameters. On ``map`` the layer takes
    ``(B, C, H, W)``; on ``tokens`` it takes rows ``(M, C)``, every token a sample as PCT's
    ``Conv1d`` + ``BatchNorm1d`` (apply it with :func:`attn_ops.layouts.masked_apply`, which also
    keeps padded tokens out of the statistics).
    """
    if layout not in (TOKENS, MAP):
        raise ValueError(f'build_norm: layout must be {TOKENS!r} or {MAP!r}, got {layout!r}')
    cfg = dict(cfg or dict(type='BN'))
    if 'type' not in cfg:
        raise KeyError(f'norm config needs a "type" key, got keys {sorted(cfg)}')
    kind = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if kind in _BATCH_NORMS:
        cfg.pop('num_groups', None)
        if kind == 'SyncBN':
            layer = nn.SyncBatchNorm(dim, **cfg)
        else:
            layer = (nn.BatchNorm2d if layout == MAP else nn.BatchNorm1d)(dim, **cfg)
    elif kind == 'GN':
        if 'num_groups' not in cfg:
            raise KeyError(f'norm config of type GN needs "num_groups", got keys {sorted(cfg)}')
        layer = nn.GroupNorm(cfg.pop('num_groups'), dim, **cfg)
    elif kind == 'LN':
        if layout == MAP:
            layer = nn.GroupNorm(1, dim, **cfg)  # one group: normalise (C, H, W) per sample
        else:
            layer = nn.LayerNorm(dim, **cfg)
    elif kind == 'IN' and layout == MAP:
        layer = nn.InstanceNorm2d(dim, **cfg)
    else:
        raise KeyError(f'norm type {kind!r} is not known; expected one of BN, BN1d, BN2d, SyncBN, GN, '
                       f'LN{", IN" if layout == MAP else ""} for {layout}')
    for p in layer.parameters():
        p.requires_grad_(requires_grad)
    return layer


MAP_BUDGET = 2 ** 26   # elements of an intermediate map an op forms at once (256 MiB in float32); ops that
                       # would form more go through it in chunks (External Attention, HaloAttention)


def chunk_spans(n: int, chunk: int) -> list[slice]:
    """``range(n)`` cut into slices of at most ``chunk``."""
    return [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)]


@contextlib.contextmanager
def float32_math(x: Tensor):
    """Autocast off on ``x``'s device: sums and softmax statistics inside run in float32 (or
    float64) when their inputs go through :func:`upcast`; the caller casts the result back.
    Outside autocast it enters nothing (entering autocast costs microseconds per call, which show
    on small inputs)."""
    if not torch.is_autocast_enabled(x.device.type):
        yield
        return
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield


def upcast(t: Tensor) -> Tensor:
    """float16 / bfloat16 -> float32; float32 and float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def float32_mean(x: Tensor, dim, keepdim: bool = True) -> Tensor:
    """Mean of ``x`` over ``dim`` (an axis or a tuple of axes), summed in float32 under autocast,
    returned in ``x.dtype``."""
    with float32_math(x):
        return upcast(x).mean(dim=dim, keepdim=keepdim).to(x.dtype)


def float32_softmax(logits: Tensor, dim: int) -> Tensor:
    """Softmax over ``dim`` with float32 statistics under autocast, returned in ``logits.dtype``."""
    with float32_math(logits):
        return upcast(logits).softmax(dim=dim).to(logits.dtype)


def check_positive(op: str, **values) -> None:
    """Raise ``ValueError`` naming ``op`` unless every value is a positive integer."""
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f'{op}: {name} must be a positive integer, got {v!r}')
