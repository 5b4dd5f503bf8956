"""What every op test shares, so that a family's test file is mostly a table of cases.

* :func:`op_names` / :func:`small_cfg` / :func:`build` / :func:`input_for`: registered ops, their
  smallest configs, built with non-trivial weights, and inputs in their layout; :func:`call` runs an
  op on an input, giving point ops (``forward`` takes ``pos=``) example positions.
* :class:`Case` + :func:`formula_test` / :func:`gradcheck_test`: an op against its formula written
  out in the family's test file (outputs, input and parameter gradients, attention weights;
  float64 ``gradcheck``).
* :class:`Peer` cases + :func:`catalogue_test`: an op against the catalogue module with our weights
  copied across (``tools/peers/catalogue.py``), max abs difference < 1e-5 in float32.
* :func:`padded_pair`: the same samples at two paddings, for mask tests.

The registry-wide properties (validation, masks, robustness, attention weights, kinds) are checked
for every op by ``tests/ops/test_contract.py``; a family file adds what is particular to its ops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import pytest
import torch
from torch import Tensor, nn

from attn_ops import ATTENTION
from attn_ops.layouts import example_input, example_positions, takes_positions
from attn_ops.ops.layers import Scale

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


# ----------------------------------------------------------------------------- ops and inputs
def op_names(kind: Optional[str] = None, layout: Optional[str] = None, mask: Optional[bool] = None,
             attn: Optional[bool] = None) -> list[str]:
    """Registered op names, optionally those of one kind / layout / mask support / with weights."""
    out = []
    for name in sorted(ATTENTION.module_dict):
        cls = ATTENTION.get(name)
        if ((kind is None or cls.kind == kind) and (layout is None or cls.layout == layout)
                and (mask is None or cls.supports_mask == mask)
                and (attn is None or (cls.attn_form is not None) == attn)):
            out.append(name)
    return out


def small_cfg(name: str, dim: int = 16, **kw) -> dict:
    """The smallest config of a registered op: its ``dim`` (every other argument has the paper's
    default)."""
    return dict(type=name, dim=dim, **kw)


def randomize_(op: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Non-trivial weights: parameters N(0, std) (catalogue inits are often N(0, 0.001), which makes
    every softmax uniform), norms' affine and running statistics near but not at identity, and
    learnable scales (``Scale(0)`` branches) at 0.7 so that closed branches are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in op.modules():
            if isinstance(module, Scale):
                module.scale.fill_(0.7)
            elif isinstance(module, NORMS):
                if getattr(module, 'weight', None) is not None:
                    module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
                    module.bias.copy_(torch.rand(module.bias.shape, generator=g) - 0.5)
                if getattr(module, 'running_mean', None) is not None:
                    module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=g) - 0.5)
                    module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
            else:
                for p in module.parameters(recurse=False):
                    p.copy_(torch.randn(p.shape, generator=g) * std)
    return op


def build(cfg: dict, dtype: torch.dtype = torch.float32, train: bool = False, std: Optional[float] = 0.3):
    """``cfg`` built from ATTENTION in ``dtype``, train or eval, with :func:`randomize_` weights
    (``std=None`` keeps the op's own initialisation)."""
    op = ATTENTION.build(dict(cfg)).to(dtype)
    if std is not None:
        randomize_(op, std)
    return op.train(train)


def input_for(op_or_layout, dim: Optional[int] = None, batch: int = 2, tokens: int = 36,
              dtype: torch.dtype = torch.float32, scale: float = 1.0, seed: int = 0) -> Tensor:
    """A random input in the op's layout (maps are the squarest H x W with H*W ~ ``tokens``)."""
    layout = getattr(op_or_layout, 'layout', op_or_layout)
    dim = dim if dim is not None else op_or_layout.dim
    g = torch.Generator().manual_seed(seed)
    return example_input(layout, dim, batch=batch, tokens=tokens, generator=g).to(dtype) * scale


def call(op: nn.Module, x: Tensor, **kw):
    """``op(x, **kw)``; an op whose ``forward`` takes ``pos=`` (a point op) also gets
    :func:`~attn_ops.layouts.example_positions` for the tokens of ``x`` unless ``kw`` has them (a
    token keeps its position at any padding, so padded and unpadded runs see the same points)."""
    if 'pos' not in kw and takes_positions(op):
        b, n = (x.shape[0], x.shape[1]) if x.dim() >= 2 else (1, x.shape[0])
        kw['pos'] = example_positions(b, n, device=x.device)
    return op(x, **kw)


def lengths_mask(lengths: Sequence[int], n: int) -> Tensor:
    """(B, N) bool padding mask with ``lengths[b]`` real tokens first in each sample."""
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]


def padded_pair(real: Sequence[Tensor], sizes=(9, 13), fills=(5.0, -3.0)):
    """The samples ``real`` ((n_b, C) each) padded with garbage to two lengths: [(x, mask), (x, mask)]."""
    out = []
    c = real[0].shape[-1]
    for n_pad, fill in zip(sizes, fills):
        x = torch.full((len(real), n_pad, c), fill)
        x[:, :, ::2] = torch.randn(len(real), n_pad, (c + 1) // 2) * 10
        for b, r in enumerate(real):
            x[b, :len(r)] = r
        out.append((x, lengths_mask([len(r) for r in real], n_pad)))
    return out


def as_output(out):
    """The features of an op's result (drops the weights of a ``return_attn`` call)."""
    return out[0] if isinstance(out, tuple) else out


# ----------------------------------------------------------------------------- formula cases
@dataclass
class Case:
    """One op configuration checked against its written-out formula.

    ``formula(op, x, **call)`` returns the expected output computed with explicit maths from the
    op's own parameters; ``weights(op, x, **call)``, when given, the expected attention weights in
    the documented form of ``return_attn=True``. ``lengths`` makes a padding mask (passed as
    ``mask=``) with that many real tokens per sample.
    """

    cfg: dict
    shape: tuple
    formula: Callable
    weights: Optional[Callable] = None
    lengths: Optional[Sequence[int]] = None
    call: dict = field(default_factory=dict)
    train: bool = False
    std: float = 0.5
    id: str = ''

    def make(self, seed: int = 0):
        op = build(self.cfg, torch.float64, self.train, self.std)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.shape, generator=g, dtype=torch.float64).requires_grad_()
        call = dict(self.call)
        if self.lengths is not None:
            call['mask'] = lengths_mask(self.lengths, self.shape[1])
        return op, x, call


def case_ids(cases: Sequence[Case]) -> list[str]:
    return [c.id or f"{c.cfg['type']}-{i}" for i, c in enumerate(cases)]


def assert_formula(case: Case, rtol: float = 1e-9, atol: float = 1e-10) -> None:
    """Outputs, gradients w.r.t. the input and every parameter, and (if given) the attention
    weights of the op equal those of ``case.formula`` in float64."""
    op, x, call = case.make()
    torch.manual_seed(0)
    out = op(x, **call)
    torch.manual_seed(0)
    expected = case.formula(op, x, **call)
    assert out.shape == expected.shape, (tuple(out.shape), tuple(expected.shape))
    torch.testing.assert_close(out, expected, rtol=rtol, atol=atol)
    grad = torch.randn_like(out)
    params = [p for p in op.parameters() if p.requires_grad]
    got = torch.autograd.grad((out * grad).sum(), [x, *params], allow_unused=True)
    want = torch.autograd.grad((expected * grad).sum(), [x, *params], allow_unused=True)
    names = ['input'] + [n for n, p in op.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, got, want):
        if a is None and b is None:
            continue
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        torch.testing.assert_close(a, b, rtol=rtol * 10, atol=atol * 10, msg=lambda m: f'grad of {name}: {m}')
    if case.weights is not None:
        with torch.no_grad():
            _, w = op(x, return_attn=True, **call)
            torch.testing.assert_close(w, case.weights(op, x, **call), rtol=rtol, atol=atol)


def formula_test(cases: Sequence[Case]):
    """A parametrised test: each case against its formula (:func:`assert_formula`)."""
    @pytest.mark.parametrize('case', cases, ids=case_ids(cases))
    def test_formula(case):
        assert_formula(case)
    return test_formula


def gradcheck_test(cases: Sequence[Case]):
    """A parametrised test: float64 ``gradcheck`` of each case's op w.r.t. its input."""
    @pytest.mark.parametrize('case', cases, ids=case_ids(cases))
    def test_gradcheck(case):
        op, x, call = case.make()
        assert torch.autograd.gradcheck(lambda t: op(t, **call), (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    return test_gradcheck


# ----------------------------------------------------------------------------- the catalogue
@dataclass
class PeerCase:
    """One op configuration compared with its catalogue peer, our weights copied into it."""

    cfg: dict
    shape: tuple
    std: float = 0.3
    atol: float = 1e-5
    fixed: bool = True       # apply the peer's known-defect fix (``tools.peers.catalogue.Peer.fix``)
    train: bool = False
    id: str = ''


def catalogue_diff(case: PeerCase, seed: int = 0) -> float:
    """Max abs difference between our op and the catalogue's on one random input (float32)."""
    from tools.peers.catalogue import build_peer, run_peer
    op = build(case.cfg, torch.float32, case.train, case.std)
    theirs = build_peer(op, fixed=case.fixed)
    assert theirs is not None, f'{case.cfg["type"]} has no catalogue peer in tools/peers/catalogue.py'
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(case.shape, generator=g)
    with torch.no_grad():
        torch.manual_seed(seed)
        ours = as_output(op(x))
        torch.manual_seed(seed)
        expected = run_peer(op, theirs, x)
    assert ours.shape == expected.shape, (tuple(ours.shape), tuple(expected.shape))
    return (ours - expected).abs().max().item()


def catalogue_test(cases: Sequence[PeerCase]):
    """A parametrised test: each case within ``atol`` (1e-5) of the catalogue, weights copied."""
    ids = [c.id or f"{c.cfg['type']}-{i}" for i, c in enumerate(cases)]

    @pytest.mark.parametrize('case', cases, ids=ids)
    def test_catalogue(case):
        pytest.importorskip('fightingcv_attention')
        diff = catalogue_diff(case)
        assert diff < case.atol, diff
    return test_catalogue


# ----------------------------------------------------------------------------- learning
def assert_learns(loss_fn: Callable[[], Tensor], model: nn.Module, op: nn.Module, steps: int = 6,
                  lr: float = 3e-3, name: str = '') -> list[float]:
    """``steps`` Adam steps on ``loss_fn()``: every loss finite, the last below the first, and the
    weights of ``op`` (the op under test inside ``model``, if it has any) moved. Returns the losses."""
    before = [p.detach().clone() for p in op.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        assert torch.isfinite(loss), f'{name}: non-finite loss {loss}'
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], f'{name}: loss did not fall: {losses}'
    moved = any(not torch.equal(b, p) for b, p in zip(before, op.parameters()))
    assert moved or not before, f'{name}: op weights never moved'    # parameter-free ops (SimAM) have none
    return losses


# ----------------------------------------------------------------------------- formula helpers
def softmax(x: Tensor, dim: int) -> Tensor:
    """Written out: exp(x - max) / sum, so a reference never calls the library's softmax paths."""
    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)
    return e / e.sum(dim=dim, keepdim=True)


def linear(x: Tensor, layer: nn.Linear) -> Tensor:
    """``x W^T + b`` written out (channels last)."""
    y = torch.einsum('...c,oc->...o', x, layer.weight)
    return y + layer.bias if layer.bias is not None else y


def conv1x1(x: Tensor, conv: nn.Module) -> Tensor:
    """A 1x1 convolution on (B, C, H, W) written as a channel matmul."""
    w = conv.weight.reshape(conv.weight.shape[0], -1)
    y = torch.einsum('oc,bc...->bo...', w, x)
    if conv.bias is not None:
        y = y + conv.bias.view(1, -1, *([1] * (x.dim() - 2)))
    return y


def batch_norm_eval(x: Tensor, bn: nn.Module, channel_dim: int = 1) -> Tensor:
    """Eval-mode batch norm with the running statistics, over ``channel_dim``."""
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def layer_norm(x: Tensor, ln: nn.LayerNorm) -> Tensor:
    """LayerNorm over the last axis written out: biased variance, the layer's eps and affine."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def zero_rows(y: Tensor, mask: Optional[Tensor]) -> Tensor:
    """(B, N, C) with the padded tokens set to zero."""
    return y if mask is None else torch.where(mask[:, :, None], y, torch.zeros_like(y))


__all__ = ['Case', 'PeerCase', 'as_output', 'assert_formula', 'assert_learns', 'batch_norm_eval', 'build', 'call',
           'case_ids',
           'catalogue_diff', 'catalogue_test', 'conv1x1', 'formula_test', 'gradcheck_test', 'input_for',
           'layer_norm', 'lengths_mask', 'linear', 'op_names', 'padded_pair', 'randomize_', 'small_cfg', 'softmax',
           'zero_rows']
