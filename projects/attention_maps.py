"""Attention weights of a built model, collected through the operator contract's explicit path,
and the queries and memory units worth drawing.

* :func:`attention_layers` -- the attention layers of a model: the outermost modules that declare
  an ``attn_form`` (registered ops and the :class:`~attn_ops.LayoutAdapter` around token ops);
* :func:`select_layers` -- the layers named by module name, glob or op type, with clear errors;
* :class:`AttentionRecorder` -- forward hooks that call each hooked op a second time on the same
  input with ``return_attn=True`` and keep its weights as :class:`AttentionRecord` (no change to
  the model: the first call, on the fused path, is what the model computes with);
* :func:`query_entropy`, :func:`focused_queries` -- how focused each query's row is; the most
  and least focused queries;
* :func:`unit_mass` -- the attention mass each external memory unit takes, for ranking units.

Weights are kept in two forms: ``dense`` (B, h, N_q, N_k), the weight of key token k in query
token q (ops of ``attn_form='local'`` are expanded with their ``dense_attention``), and
``memory`` (B, h, N, S), External Attention's token x memory-unit map. Tokens of an op that ran
on a map are its pixels in row-major order (``hw`` = (H, W)).
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

QUERY_FORMS = ('dense', 'local')     # a map per query token
UNIT_FORMS = ('memory',)             # a map per memory unit


def op_name(module: nn.Module) -> str:
    """The registered type of an attention layer (the op inside a layout adapter)."""
    return type(getattr(module, 'op', module)).__name__


def describe(name: str, module: nn.Module) -> str:
    """``'name (OpType, kind, attn_form)'`` for messages and captions."""
    return f'{name} ({op_name(module)}, kind {module.kind!r}, attn_form {module.attn_form!r})'


def _declares_form(module: nn.Module) -> bool:
    return hasattr(module, 'attn_form') and hasattr(module, 'kind') and hasattr(module, 'dense_attention')


def attention_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{module name: module}`` of every attention layer of ``model``, in module order: the
    outermost modules declaring ``attn_form`` (an adapter, not the op inside it)."""
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if _declares_form(module) and not any(name.startswith(f'{outer}.') for outer in found):
            found[name] = module
    return found


def select_layers(model: nn.Module, patterns: Optional[Sequence[str]] = None) -> dict[str, nn.Module]:
    """The attention layers to draw.

    ``patterns``: module names (``decode_head.attn.op``), globs (``encoder.layers.*``) or op types
    (``OffsetAttention``); None: every layer that forms a map over positions (the forms
    ``QUERY_FORMS`` and ``UNIT_FORMS``; gates are left out). Raises ``ValueError`` for a pattern
    that matches no attention layer (listing the layers found, closest first), for a chosen layer
    whose op forms no attention map (naming the op and its kind), and for a model without any.
    """
    layers = attention_layers(model)
    model_name = type(model).__name__
    listing = ', '.join(describe(n, m) for n, m in layers.items()) or 'none'
    if not patterns:
        chosen = {n: m for n, m in layers.items() if m.attn_form in QUERY_FORMS + UNIT_FORMS}
        if not chosen:
            raise ValueError(f'{model_name} has no attention layer that forms an attention map over positions '
                             f'(attn_form in {QUERY_FORMS + UNIT_FORMS}); attention layers found: {listing}')
        return chosen
    chosen = {}
    for pattern in patterns:
        hits = {n: m for n, m in layers.items()
                if n == pattern or fnmatch.fnmatchcase(n, pattern) or op_name(m) == pattern}
        if not hits:
            close = difflib.get_close_matches(pattern, list(layers) + sorted({op_name(m) for m in layers.values()}),
                                              n=3, cutoff=0.4)
            hint = f' Did you mean: {", ".join(close)}?' if close else ''
            raise ValueError(f'--layer {pattern!r} matches no attention layer of {model_name} (by module name, '
                             f'glob or op type).{hint} Attention layers found: {listing}')
        chosen.update(hits)
    for name, module in chosen.items():
        if module.attn_form is None:
            raise ValueError(f'{name} is {op_name(module)}, an op of kind {module.kind!r} that forms no attention '
                             f'map (attn_form=None): there is nothing to draw. Layers with a map: '
                             + (', '.join(describe(n, m) for n, m in layers.items() if m.attn_form) or 'none'))
        if module.attn_form not in QUERY_FORMS + UNIT_FORMS:
            raise ValueError(f'{name} is {op_name(module)}, whose weights are a {module.attn_form!r} '
                             f'(broadcast to its input), not a map over positions; this tool draws the forms '
                             f'{QUERY_FORMS + UNIT_FORMS}')
    return chosen


@dataclass
class AttentionRecord:
    """The weights one call of an attention layer formed.

    Attributes:
        name: the layer's module name; ``op``: its registered type.
        form: ``'dense'`` (weights (B, h, N_q, N_k)) or ``'memory'`` (weights (B, h, N, S)).
        weights: float32 on the CPU, detached.
        hw: (H, W) of the token grid when the op ran on a map (tokens row-major), else None.
        mask: (B, N) padding mask (True = real token) the layer was given, or None.
        positions: (B, N, 3) token positions from the recorder's ``position_sources``, or None.
    """

    name: str
    op: str
    form: str
    weights: Tensor
    hw: Optional[tuple[int, int]] = None
    mask: Optional[Tensor] = None
    positions: Optional[Tensor] = None

    @property
    def num_tokens(self) -> int:
        return self.weights.shape[2]

    @property
    def num_heads(self) -> int:
        return self.weights.shape[1]


def _token_grid(module: nn.Module, args: tuple, kwargs: dict) -> Optional[tuple[int, int]]:
    """(H, W) of the tokens of this call: the map's size for an op on maps, the ``hw`` of a map op
    adapted to tokens (given per call or at construction), None for a token op."""
    if getattr(module, 'layout', None) == 'map':
        return tuple(int(s) for s in args[0].shape[-2:])
    hw = kwargs.get('hw', getattr(module, 'hw', None))
    return None if hw is None else (int(hw[0]), int(hw[1]))


class AttentionRecorder:
    """Forward hooks on attention layers that collect their weights, as a context manager::

        with AttentionRecorder(select_layers(model)) as rec:
            model(**data, mode='tensor')
        rec.records   # one AttentionRecord per layer call, in call order

    Each hook calls its layer again on the same positional and keyword inputs with
    ``return_attn=True`` (no gradient), the contract's explicit path; the model's own output is
    untouched. ``local`` weights are expanded to the ``dense`` form with the op's
    ``dense_attention(weights, hw)``.

    ``position_sources``: modules whose output is ``(positions (B, M, 3), features, mask)``
    (PCT's sample-and-group stages); a record of N tokens gets the positions of the latest such
    output with M = N, so that attention over resampled points can be drawn where they lie.
    """

    def __init__(self, layers: dict[str, nn.Module], position_sources: Iterable[nn.Module] = ()):
        self.layers = dict(layers)
        self.position_sources = list(position_sources)
        self.records: list[AttentionRecord] = []
        self._positions: list[Tensor] = []
        self._handles = []
        self._busy = False

    def __enter__(self) -> 'AttentionRecorder':
        self.records, self._positions = [], []
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._layer_hook(name), with_kwargs=True))
        for module in self.position_sources:
            self._handles.append(module.register_forward_hook(self._position_hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _position_hook(self, module, args, output) -> None:
        pos = output[0] if isinstance(output, (tuple, list)) else None
        if not isinstance(pos, Tensor) or pos.dim() != 3 or pos.shape[-1] != 3:
            raise ValueError(f'position source {type(module).__name__} must return (positions (B, M, 3), ...), '
                             f'got {type(output).__name__}')
        self._positions.append(pos.detach().float().cpu())

    def _layer_hook(self, name: str):
        def hook(module, args, kwargs, output):
            if self._busy:           # the second call below runs the hooks again
                return
            self._busy = True
            try:
                with torch.no_grad():
                    _, weights = module(*args, **{**kwargs, 'return_attn': True})
            finally:
                self._busy = False
            hw = _token_grid(module, args, kwargs)
            form = module.attn_form
            if form == 'local':
                if hw is None:
                    raise ValueError(f'{describe(name, module)}: local weights need the token grid (H, W) to be '
                                     'expanded, and this call gave none')
                weights, form = module.dense_attention(weights, hw), 'dense'
            if weights.dim() != 4:
                raise ValueError(f'{describe(name, module)} returned weights of shape {tuple(weights.shape)}; '
                                 f'the {form} form is 4-D')
            weights = weights.detach().float().cpu()
            mask = kwargs.get('mask')
            n = weights.shape[2]
            positions = next((p for p in reversed(self._positions) if p.shape[1] == n), None)
            self.records.append(AttentionRecord(
                name, op_name(module), form, weights, hw, None if mask is None else mask.detach().cpu(), positions))
        return hook


def query_entropy(weights: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Entropy (nats) of each query's weights, each row scaled to sum to one, averaged over heads:
    ``(B, h, N_q, N_k) -> (B, N_q)``; low = focused on few keys. Padded queries and rows without
    weight are NaN."""
    w = weights.double()
    rows = w / w.sum(-1, keepdim=True)
    ent = -(rows * torch.log(rows.clamp_min(1e-300))).sum(-1).mean(1)
    empty = w.sum(-1).amax(1) <= 0
    if mask is not None:
        empty = empty | ~mask.to(empty.device)
    return ent.masked_fill(empty, float('nan'))


def focused_queries(records: Sequence[AttentionRecord], batch_index: int = 0) -> tuple[int, int]:
    """``(most, least)`` focused query tokens of sample ``batch_index``: the lowest and highest
    :func:`query_entropy`, averaged over the dense records that share the first one's tokens."""
    dense = [r for r in records if r.form == 'dense']
    if not dense:
        raise ValueError('no dense attention record to pick queries from')
    n = dense[0].num_tokens
    ent = torch.stack([query_entropy(r.weights[batch_index:batch_index + 1],
                                     None if r.mask is None else r.mask[batch_index:batch_index + 1])[0]
                       for r in dense if r.num_tokens == n]).mean(0)
    if torch.isnan(ent).all():
        raise ValueError(f'{dense[0].name}: every query row is empty (all padding?)')
    finite = torch.where(torch.isnan(ent), torch.full_like(ent, float('inf')), ent)
    most = int(finite.argmin())
    least = int(torch.where(torch.isnan(ent), torch.full_like(ent, -float('inf')), ent).argmax())
    return most, least


def unit_mass(record: AttentionRecord) -> Tensor:
    """Mass of each memory unit, ``(h, S)``: the weights of every real token summed over the batch
    and tokens (each token's row sums to one over the units, so a head's masses sum to its number
    of real tokens)."""
    if record.form != 'memory':
        raise ValueError(f'{record.name}: unit mass needs memory weights, got the {record.form} form')
    w = record.weights
    if record.mask is not None:
        w = w * record.mask[:, None, :, None].to(w.dtype)
    return w.sum(dim=(0, 2))
