"""The two layouts of the library, their checks, padding masks, and the one adapter between them.

Layouts
-------
``tokens``  ``(B, N, C)``: a batch of N tokens (pixels, points, patches) of C channels.
``map``     ``(B, C, H, W)``: a batch of feature maps, as convolutions use them.

Channels-last maps ``(B, H, W, C)`` are not a third convention: permute them to ``map``.

Masks
-----
A padding mask is a bool tensor ``(B, N)``, ``True`` for a real token. Token ops that mix
tokens accept ``mask=``; padded tokens never change real tokens' outputs, outputs at padded
positions are zero, and a sample with no real token gives zeros, never NaN.

Adapter
-------
:func:`as_layout` (or :class:`LayoutAdapter`) runs any op on the other layout:

* a token op on a map: ``(B, C, H, W) -> (B, HW, C) -> op -> (B, C, H, W)``; a token op that needs
  the grid (its ``forward`` takes ``hw=``, e.g. EMSA's key reduction) is given ``hw=(H, W)``, and a
  point op (its ``forward`` takes ``pos=``, e.g. PointTransformerAttention) is given the pixels'
  grid coordinates ``pos`` ``(B, HW, 2)`` = (row, col) in pixels (:func:`grid_positions`);
* a map op on tokens: ``(B, N, C) -> (B, C, H, W) -> op -> (B, N, C)`` with ``H * W == N``;
  ``hw=(H, W)`` is given at construction or per call. Map ops have no notion of padding, so a
  mask with padded tokens is refused.
"""
from __future__ import annotations

import inspect
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

TOKENS = 'tokens'
MAP = 'map'
LAYOUTS = (TOKENS, MAP)
_DESCRIBE = {TOKENS: 'tokens (B, N, C)', MAP: 'a map (B, C, H, W)'}


def _name(op) -> str:
    return op if isinstance(op, str) else type(op).__name__


def _shape(x: Tensor) -> str:
    return '(' + ', '.join(str(s) for s in x.shape) + ')'


def check_tokens(op, x: Tensor, dim: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, N, dim)``; the text names op, expected and got."""
    if isinstance(x, Tensor) and x.dim() == 3 and x.shape[-1] == dim:
        return
    got = _shape(x) if isinstance(x, Tensor) else type(x).__name__
    msg = f'{_name(op)} expects tokens (B, N, C) with C={dim}, got {got}'
    if isinstance(x, Tensor):
        if x.dim() == 4 and x.shape[1] == dim:
            msg += ('; this looks like a map (B, C, H, W): flatten it with '
                    'attn_ops.layouts.map_to_tokens or wrap the op with as_layout(op, "map")')
        elif x.dim() == 4 and x.shape[-1] == dim:
            msg += '; this looks channels-last (B, H, W, C): permute(0, 3, 1, 2) to a map first'
        elif x.dim() == 3 and x.shape[1] == dim:
            msg += '; this looks channels-first (B, C, N): transpose(1, 2) to (B, N, C)'
    raise ValueError(msg)


def check_map(op, x: Tensor, channels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, channels, H, W)``."""
    if isinstance(x, Tensor) and x.dim() == 4 and x.shape[1] == channels:
        return
    got = _shape(x) if isinstance(x, Tensor) else type(x).__name__
    msg = f'{_name(op)} expects a map (B, C, H, W) with C={channels}, got {got}'
    if isinstance(x, Tensor):
        if x.dim() == 4 and x.shape[-1] == channels:
            msg += '; this looks channels-last (B, H, W, C): permute(0, 3, 1, 2) first'
        elif x.dim() == 3 and x.shape[-1] == channels:
            msg += ('; this looks like tokens (B, N, C): reshape with '
                    'attn_ops.layouts.tokens_to_map or wrap the op with as_layout(op, "tokens")')
    raise ValueError(msg)


def check_mask(op, mask: Optional[Tensor], batch: int, length: int, what: str = 'mask') -> None:
    """A padding mask must be a bool ``(B, N)`` tensor matching the tokens."""
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f'{_name(op)} expects {what} as a bool tensor (B, N) with True = real '
                         f'token, got dtype {got}')
    if tuple(mask.shape) != (batch, length):
        raise ValueError(f'{_name(op)} expects {what} of shape (B, N)=({batch}, {length}), '
                         f'got {_shape(mask)}')


def attend_mask(mask: Tensor, dim: int = -1) -> Tensor:
    """Key mask safe for a softmax over ``dim``: a sample with no real token attends to all slots.

    Its outputs are zeroed afterwards by :func:`zero_padded`, so the choice only avoids NaN.
    """
    return mask | ~mask.any(dim=dim, keepdim=True)


def zero_padded(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Zero the tokens of ``x`` (B, N, C) where ``mask`` (B, N) is False."""
    if mask is None:
        return x
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)


def masked_apply(fn: nn.Module, x: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Apply a row-wise module (linear, norm, MLP) to the real tokens of ``x`` (B, N, C) only.

    Padded rows neither enter ``fn`` (so BatchNorm statistics are the real tokens') nor come
    out: they are zero. Without a mask every token is a row. Returns (B, N, C_out).
    """
    if mask is None:
        return fn(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)
    y = fn(x[mask])
    out = y.new_zeros(*x.shape[:-1], y.shape[-1])
    out[mask] = y
    return out


def map_to_tokens(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, H*W, C)``, row-major over (H, W)."""
    if x.dim() != 4:
        raise ValueError(f'map_to_tokens expects a map (B, C, H, W), got {_shape(x)}')
    return x.flatten(2).transpose(1, 2)


def tokens_to_map(x: Tensor, hw: Sequence[int]) -> Tensor:
    """``(B, H*W, C) -> (B, C, H, W)``, the inverse of :func:`map_to_tokens`."""
    h, w = int(hw[0]), int(hw[1])
    if x.dim() != 3 or x.shape[1] != h * w:
        raise ValueError(f'tokens_to_map expects tokens (B, N, C) with N=H*W={h}*{w}={h * w}, '
                         f'got {_shape(x)}')
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


class LayoutAdapter(nn.Module):
    """Run ``op`` on the layout ``layout`` although it natively works on the other one.

    Args:
        op: an attention op with a ``layout`` attribute (``'tokens'`` or ``'map'``).
        layout: the layout the adapter accepts and returns.
        hw: for a map op seen as tokens, the default ``(H, W)`` of the token grid.

    ``forward(x, *, mask=None, return_attn=False, hw=None)``: ``return_attn`` is handed to the op
    and its weights come back unchanged (token index = row-major pixel index). ``kind``,
    ``attn_form``, ``dim`` and ``dense_attention`` are the op's.
    """

    def __init__(self, op: nn.Module, layout: str, hw: Optional[Sequence[int]] = None):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f'LayoutAdapter: layout must be one of {LAYOUTS}, got {layout!r}')
        native = getattr(op, 'layout', None)
        if native not in LAYOUTS:
            raise ValueError(f'LayoutAdapter: {type(op).__name__} declares no layout '
                             f'(expected op.layout in {LAYOUTS}, got {native!r})')
        if native == layout:
            raise ValueError(f'LayoutAdapter: {type(op).__name__} already works on {layout}; '
                             'use as_layout(), which returns such an op unchanged')
        if getattr(op, 'kind', None) == 'pool':
            raise ValueError(f'LayoutAdapter: {type(op).__name__} is a pool op (its output is a vector, '
                             'not a layout); call it on its own layout')
        self.op = op
        self.layout = layout
        self.hw = tuple(hw) if hw is not None else None
        takes = inspect.signature(op.forward).parameters if layout == MAP else {}
        self.passes_hw, self.passes_pos = 'hw' in takes, 'pos' in takes

    @property
    def dim(self) -> int:
        return self.op.dim

    @property
    def kind(self) -> str:
        return self.op.kind

    @property
    def attn_form(self):
        return self.op.attn_form

    supports_mask = False  # a map has no padding; a map op cannot skip padded tokens

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        return self.op.dense_attention(weights, hw)

    def forward(self, x: Tensor, *, mask: Optional[Tensor] = None, return_attn: bool = False,
                hw: Optional[Sequence[int]] = None):
        c = self.dim
        name = f'{type(self.op).__name__} (adapted to {_DESCRIBE[self.layout]})'
        if self.layout == MAP:
            check_map(name, x, c)
            if mask is not None:
                raise ValueError(f'{name}: a map has no padding; got a mask of shape {_shape(mask)}')
            _, _, h, w = x.shape
            grid = dict(hw=(h, w)) if self.passes_hw else {}
            if self.passes_pos:
                grid['pos'] = grid_positions((h, w), x.shape[0], dtype=x.dtype, device=x.device)
            out = self.op(map_to_tokens(x), return_attn=return_attn, **grid)
            y, weights = out if return_attn else (out, None)
            y = tokens_to_map(y, (h, w))
        else:
            check_tokens(name, x, c)
            hw = hw if hw is not None else self.hw
            if hw is None:
                raise ValueError(f'{name}: the token grid size is unknown; pass hw=(H, W) with '
                                 f'H*W={x.shape[1]} at construction or call')
            if mask is not None:
                check_mask(name, mask, x.shape[0], x.shape[1])
                if not bool(mask.all()):
                    raise ValueError(f'{name}: a map op cannot honour a padding mask with padded tokens')
            out = self.op(tokens_to_map(x, hw), return_attn=return_attn)
            y, weights = out if return_attn else (out, None)
            y = map_to_tokens(y)
        return (y, weights) if return_attn else y


def as_layout(op: nn.Module, layout: str, hw: Optional[Sequence[int]] = None) -> nn.Module:
    """``op`` itself when it already works on ``layout``, else a :class:`LayoutAdapter` around it."""
    if getattr(op, 'layout', None) == layout:
        return op
    return LayoutAdapter(op, layout, hw=hw)


def grid_positions(hw: Sequence[int], batch: int = 1, **tensor_kw) -> Tensor:
    """The (row, col) pixel coordinates of an H x W grid as positions ``(B, H*W, 2)``, row-major
    (the token order of :func:`map_to_tokens`)."""
    h, w = int(hw[0]), int(hw[1])
    tensor_kw.setdefault('dtype', torch.get_default_dtype())
    rows, cols = torch.meshgrid(torch.arange(h, **tensor_kw), torch.arange(w, **tensor_kw), indexing='ij')
    return torch.stack([rows, cols], -1).reshape(1, h * w, 2).expand(batch, -1, -1)


def takes_positions(op: nn.Module) -> bool:
    """Whether ``op``'s ``forward`` takes point positions ``pos=`` (point ops)."""
    return 'pos' in inspect.signature(op.forward).parameters


def example_positions(batch: int, tokens: int, dim: int = 3, **tensor_kw) -> Tensor:
    """Positions ``(B, N, dim)`` in the unit cube for example point tokens: token n sits at
    ``frac(n * a)`` (a low-discrepancy sequence, ``a_d`` the powers of the inverse of the generalised
    golden ratio), in every sample. Distinct, well-spread points, and a token keeps its position
    whatever N is (padding more tokens moves none of the first ones)."""
    phi = 2.0
    for _ in range(30):                                 # root of phi^(dim+1) = phi + 1
        phi = (1.0 + phi) ** (1.0 / (dim + 1))
    a = torch.tensor([phi ** -(d + 1) for d in range(dim)], dtype=torch.float64)
    n = torch.arange(1, tokens + 1, dtype=torch.float64).unsqueeze(1)
    tensor_kw.setdefault('dtype', torch.get_default_dtype())
    pos = torch.frac(n * a).to(**tensor_kw)
    return pos.unsqueeze(0).expand(batch, -1, -1)


def example_input(layout: str, channels: int, batch: int = 2, tokens: int = 64,
                  generator: Optional[torch.Generator] = None, **tensor_kw) -> Tensor:
    """A random input in ``layout`` with about ``tokens`` positions (maps use the squarest H x W)."""
    if layout == TOKENS:
        return torch.randn(batch, tokens, channels, generator=generator, **tensor_kw)
    if layout != MAP:
        raise ValueError(f'example_input: layout must be one of {LAYOUTS}, got {layout!r}')
    h = max(int(tokens ** 0.5), 1)
    w = max(tokens // h, 1)
    return torch.randn(batch, channels, h, w, generator=generator, **tensor_kw)
