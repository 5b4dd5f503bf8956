"""Pure-PyTorch stand-ins for the few compiled ``mmcv.ops`` that mmsegmentation imports.

mmcv-lite ships ``mmcv/ops/*.py`` but not the compiled ``mmcv._ext``, so ``import mmcv.ops``
fails, and mmseg 1.2.2 imports it unguarded (``mmseg.utils.mask_classification``,
``mmseg.models.utils.point_sample``, ``mmseg.models.losses.focal_loss``,
``mmseg.models.decode_heads.san_head``) and guarded (``cc_head``, ``point_head``, ``psa_head``).

:func:`install` puts a small module at ``sys.modules['mmcv.ops']`` that provides

* :func:`point_sample`: bilinear sampling at normalised ``[0, 1]^2`` points (``grid_sample``);
* :func:`sigmoid_focal_loss`: the per-element sigmoid focal loss of the compiled kernel;
* ``CrissCrossAttention``: :class:`attn_ops.ops.criss_cross.CrissCrossAttention`.

Any other name raises ``ModuleNotFoundError`` explaining that it needs compiled mmcv, which the
guarded imports in mmseg/mmcv/mmengine already handle (``PSAHead`` then refuses to build, as
with mmcv-lite alone). When ``mmcv._ext`` is importable, :func:`install` does nothing and the
compiled ops are used untouched.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

SHIM_NAME = 'mmcv.ops'
PROVIDED = ('point_sample', 'sigmoid_focal_loss', 'CrissCrossAttention')


def compiled_mmcv_available() -> bool:
    """True when mmcv's compiled extension ``mmcv._ext`` can be imported (full mmcv)."""
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except (ImportError, ValueError):
        return False


def point_sample(input: Tensor, points: Tensor, align_corners: bool = False, **kwargs) -> Tensor:
    r"""Sample ``input`` bilinearly at ``points`` given in ``[0, 1] x [0, 1]`` (x, y) image coordinates.

    .. math:: y_{n,c,p} = \mathrm{grid\_sample}(X, 2 P - 1)_{n,c,p}

    Args:
        input: feature map (N, C, H, W).
        points: (N, P, 2) or (N, Hg, Wg, 2), last axis (x, y) with 0 = left/top edge.
        align_corners, **kwargs: passed to :func:`torch.nn.functional.grid_sample`.

    Returns:
        (N, C, P) or (N, C, Hg, Wg).
    """
    if points.dim() not in (3, 4) or points.shape[-1] != 2 or points.shape[0] != input.shape[0]:
        raise ValueError(f'point_sample expects points (N, P, 2) or (N, Hg, Wg, 2) with '
                         f'N={input.shape[0]}, got {tuple(points.shape)}')
    flat = points.dim() == 3
    grid = points.unsqueeze(2) if flat else points
    out = F.grid_sample(input, grid * 2.0 - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if flat else out


def sigmoid_focal_loss(input: Tensor, target: Tensor, gamma: float = 2.0, alpha: float = 0.25,
                       weight: Optional[Tensor] = None, reduction: str = 'mean') -> Tensor:
    r"""Sigmoid focal loss (Lin et al., ICCV 2017) with the semantics of mmcv's compiled op.

    For logits ``x`` (N, K), ``p = sigmoid(x)`` and integer targets ``t`` (N,):

    .. math::
        \ell_{n,k} = -\alpha (1 - p_{n,k})^\gamma \log p_{n,k}\ \text{if } k = t_n,\qquad
        -(1 - \alpha)\, p_{n,k}^\gamma \log(1 - p_{n,k})\ \text{otherwise}

    A target equal to K (background) makes every class negative. ``weight`` (K,) scales row ``n``
    by ``weight[t_n]`` (rows with a background target are left unscaled). ``reduction``:
    ``'none'`` -> (N, K), ``'mean'`` -> sum / N, ``'sum'`` -> sum.
    """
    if input.dim() != 2 or target.dim() != 1 or target.shape[0] != input.shape[0]:
        raise ValueError(f'sigmoid_focal_loss expects input (N, K) and target (N,), got '
                         f'{tuple(input.shape)} and {tuple(target.shape)}')
    if target.dtype != torch.long:
        raise ValueError(f'sigmoid_focal_loss expects an int64 target, got {target.dtype}')
    if reduction not in ('none', 'mean', 'sum'):
        raise ValueError(f"sigmoid_focal_loss: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    num_classes = input.shape[1]
    pos = F.one_hot(target.clamp(0, num_classes), num_classes + 1)[:, :num_classes].to(input.dtype)
    p = input.sigmoid()
    log_p, log_1mp = F.logsigmoid(input), F.logsigmoid(-input)
    loss = -(alpha * pos * (1 - p).pow(gamma) * log_p + (1 - alpha) * (1 - pos) * p.pow(gamma) * log_1mp)
    if weight is not None:
        if weight.dim() != 1 or weight.shape[0] != num_classes:
            raise ValueError(f'sigmoid_focal_loss expects weight ({num_classes},), got {tuple(weight.shape)}')
        w = torch.cat([weight, weight.new_ones(1)])[target.clamp(0, num_classes)]
        loss = loss * w.unsqueeze(1)
    if reduction == 'mean':
        return loss.sum() / input.shape[0]
    if reduction == 'sum':
        return loss.sum()
    return loss


class _StandInOps(types.ModuleType):
    """``mmcv.ops`` made of the stand-ins; other names raise a clear ``ModuleNotFoundError``."""

    def __getattr__(self, name: str):
        if name.startswith('_'):
            raise AttributeError(name)
        # ModuleNotFoundError, not AttributeError: guarded imports in mmseg/mmcv catch exactly it
        raise ModuleNotFoundError(
            f'mmcv.ops.{name} needs compiled mmcv (mmcv._ext is not installed; mmcv-lite is). '
            f'attn_ops provides pure-PyTorch stand-ins only for: {", ".join(PROVIDED)}.',
            name=f'mmcv.ops.{name}')


def build_shim() -> types.ModuleType:
    """The stand-in ``mmcv.ops`` module (not installed)."""
    from attn_ops.ops.criss_cross import CrissCrossAttention

    mod = _StandInOps(SHIM_NAME, __doc__)
    mod.__file__ = __file__
    mod.point_sample = point_sample
    mod.sigmoid_focal_loss = sigmoid_focal_loss
    mod.CrissCrossAttention = CrissCrossAttention
    mod.__all__ = list(PROVIDED)
    mod.ATTN_OPS_STAND_IN = True
    return mod


def install() -> bool:
    """Make ``mmcv.ops`` importable; returns True when the stand-ins were installed.

    Idempotent. Does nothing (returns False) when compiled mmcv is present or an ``mmcv.ops``
    is already imported.
    """
    if compiled_mmcv_available():
        return False
    existing = sys.modules.get(SHIM_NAME)
    if existing is not None:
        return bool(getattr(existing, 'ATTN_OPS_STAND_IN', False))
    import mmcv

    shim = build_shim()
    sys.modules[SHIM_NAME] = shim
    mmcv.ops = shim
    return True


def is_installed() -> bool:
    return bool(getattr(sys.modules.get(SHIM_NAME), 'ATTN_OPS_STAND_IN', False))
