"""What every op of the library shares: what it declares about itself and how it checks its input.

The contract (README "The contract"):

* ``layout``: ``'tokens'`` (B, N, C) or ``'map'`` (B, C, H, W), the native input layout.
* ``kind``: what the output is.

  - ``attention``: the attended features alone; the caller adds any residual.
  - ``block``: the output already includes the input (residual, norm or activation inside).
  - ``gate``: the input re-weighted, ``y = x * g``.
  - ``pool``: a map or tokens reduced to a vector per sample (the output shape differs).

* ``supports_mask``: ``forward`` honours a (B, N) padding mask, True = real token.
* ``attn_form``: what ``forward(..., return_attn=True)`` returns beside the output, or ``None`` when
  the op forms no attention map (then ``return_attn=True`` is an error):

  - ``dense``: (B, h, N_out, N_in), the weight of input token j in output token i; each row sums
    to one over the inputs (the docstring names the axis the softmax ran over);
  - ``memory``: (B, h, N, S), token x memory-unit weights (External Attention's double-normalised
    map; rows sum to one over the S units);
  - ``gate``: the gate ``g`` itself, broadcastable to the input (``y = x * g``);
  - ``local``: an op-specific shape (windows, rows and columns), stated in the docstring;
    :meth:`AttentionOp.dense_attention` expands it to the ``dense`` form for analysis.

* ``dim``: the channel argument of every op, first in the constructor; ``paper`` and
  ``complexity`` feed the op table, and a ``Catalogue:`` line in the class docstring says how the
  op relates to ``fightingcv-attention`` (``equal``, ``differs: <defect>, we follow the paper``, or
  ``no counterpart``).

``forward(x, *, mask=None, return_attn=False)`` is the signature of every op (``CrossAttention``
adds ``context`` as its second positional argument); ``self.check_input(x, mask, return_attn)``
comes first.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Sequence

from torch import Tensor, nn

from ..layouts import LAYOUTS, MAP, TOKENS, check_map, check_mask, check_tokens

KINDS = ('attention', 'block', 'gate', 'pool')
ATTN_FORMS = ('dense', 'memory', 'gate', 'local')


class AttentionOp(nn.Module):
    """Base of every registered op; see the module docstring for the class attributes."""

    layout: ClassVar[str] = TOKENS
    kind: ClassVar[str] = 'attention'
    supports_mask: ClassVar[bool] = False
    attn_form: ClassVar[Optional[str]] = None
    paper: ClassVar[str] = ''
    complexity: ClassVar[str] = ''

    dim: int

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        bad = []
        if cls.layout not in LAYOUTS:
            bad.append(f'layout={cls.layout!r} (expected one of {LAYOUTS})')
        if cls.kind not in KINDS:
            bad.append(f'kind={cls.kind!r} (expected one of {KINDS})')
        if cls.attn_form is not None and cls.attn_form not in ATTN_FORMS:
            bad.append(f'attn_form={cls.attn_form!r} (expected None or one of {ATTN_FORMS})')
        if bad:
            raise TypeError(f'{cls.__name__} declares ' + '; '.join(bad))

    @classmethod
    def catalogue_status(cls) -> str:
        """The paragraph after ``Catalogue:`` in the class docstring, on one line ('' when missing)."""
        lines = [line.strip() for line in (cls.__doc__ or '').splitlines()]
        for i, line in enumerate(lines):
            if line.startswith('Catalogue:'):
                para = [line[len('Catalogue:'):].strip()]
                for more in lines[i + 1:]:
                    if not more:
                        break
                    para.append(more)
                return ' '.join(para)
        return ''

    def check_input(self, x: Tensor, mask: Optional[Tensor] = None, return_attn: bool = False) -> None:
        """Validate ``x``, ``mask`` and the ``return_attn`` request; raise ``ValueError`` naming the op,
        what it expects and what it got."""
        name = type(self).__name__
        if self.layout == MAP:
            check_map(self, x, self.dim)
        else:
            check_tokens(self, x, self.dim)
        if mask is not None:
            if not self.supports_mask:
                raise ValueError(f'{name} takes no padding mask ({self.layout} op of kind {self.kind!r}); '
                                 f'got a mask of shape {tuple(mask.shape)}. Use equal-size inputs or an op '
                                 'with supports_mask=True')
            check_mask(self, mask, x.shape[0], x.shape[1])
        if return_attn and self.attn_form is None:
            raise ValueError(f'{name} forms no attention map (kind {self.kind!r}), so return_attn=True is '
                             'not available')

    def dense_attention(self, weights: Tensor, hw: Sequence[int]) -> Tensor:
        """The ``dense`` (B, h, N, N) form of ``weights`` returned by this op for a map of size
        ``hw``; ops of ``attn_form='local'`` override it. Meant for analysis at small sizes."""
        if self.attn_form == 'dense':
            return weights
        raise ValueError(f'{type(self).__name__} (attn_form={self.attn_form!r}) has no dense form of its '
                         'attention weights')

    def extra_repr(self) -> str:
        return f'dim={self.dim}, layout={self.layout}, kind={self.kind}'


def adds_identity(op: nn.Module, residual: Optional[bool] = None, caller: str = 'caller') -> bool:
    """Whether ``caller`` adds the op's input to its output, from the op's ``kind``.

    ``residual=None`` (auto): yes for ``attention`` ops, no for ``block`` and ``gate`` ops (their
    output already includes the input). ``residual=False`` is always allowed (the op's output
    alone); ``residual=True`` on a ``block`` or ``gate`` op would add the identity twice and raises,
    as does any ``pool`` op (its output is a vector, not features to add).
    """
    name, kind = type(getattr(op, 'op', op)).__name__, getattr(op, 'kind', None)
    if kind not in KINDS:
        raise ValueError(f'{caller}: {name} declares no kind (expected one of {KINDS}, got {kind!r})')
    if kind == 'pool':
        raise ValueError(f'{caller}: {name} is a pool op (map or tokens -> one vector per sample); '
                         f'{caller} needs an op that returns features of its input\'s shape')
    if residual is None:
        return kind == 'attention'
    if residual and kind != 'attention':
        what = 'already includes its input' if kind == 'block' else 'is its input re-weighted (x * g)'
        raise ValueError(f'{caller}: {name} is a {kind!r} op: its output {what}, so residual=True would '
                         'add the identity twice; leave residual unset (auto) or set it to False')
    return bool(residual)
