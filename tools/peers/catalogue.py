"""The External-Attention-pytorch catalogue (``fightingcv-attention==1.0.0``) as a peer of our ops.

One :class:`Peer` per registered op that has a catalogue counterpart. A peer is built *from our op*
(it reads the op's hyper-parameters), so tests and benchmarks compare like with like:

* ``build(op)``: the catalogue module with the same hyper-parameters;
* ``inputs(x)``: our input (the op's native layout) -> the catalogue forward's arguments;
* ``output(y)``: the catalogue's output -> our layout;
* ``copy(op, theirs)``: our weights into the catalogue module (default: ``load_state_dict`` of our
  state dict, for modules whose parameter names are equal).

``tests/ops`` compares outputs with weights copied (``tests/ops/common.py``); ``tools/benchmark_ops.py``
times both in one process. A peer that only works after a fix of the catalogue says so in ``fix``,
applied by :func:`build_peer`; the defect itself is shown by a test of the family.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn


def _identity(y):
    return y


def _single(x):
    return (x,)


def _load_same_names(op: nn.Module, theirs: nn.Module) -> None:
    theirs.load_state_dict(op.state_dict())


def to_channels_last(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1)


def from_channels_last(y: Tensor) -> Tensor:
    return y.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Peer:
    """How one catalogue module stands beside one of our ops (see the module docstring)."""

    module: str                                   # 'ExternalAttention' -> fightingcv_attention.attention.<module>
    build: Callable[[nn.Module, type], nn.Module]  # (our op, the catalogue class) -> catalogue module
    cls: str = ''                                 # class name in that module (default: module name)
    inputs: Callable[[Tensor], tuple] = _single
    output: Callable = _identity
    copy: Callable[[nn.Module, nn.Module], None] = _load_same_names
    fix: Optional[Callable[[nn.Module, nn.Module], None]] = None  # (our op, theirs) -> patch a defect


def _copy_sdpa(op: nn.Module, theirs: nn.Module) -> None:
    """Our fused qkv linear -> the catalogue's separate fc_q / fc_k / fc_v."""
    with torch.no_grad():
        for i, name in enumerate(('fc_q', 'fc_k', 'fc_v')):
            fc = getattr(theirs, name)
            fc.weight.copy_(op.qkv.weight.chunk(3)[i])
            if op.qkv.bias is not None:
                fc.bias.copy_(op.qkv.bias.chunk(3)[i])
            else:
                fc.bias.zero_()
        theirs.fc_o.weight.copy_(op.proj.weight)
        theirs.fc_o.bias.copy_(op.proj.bias)


def _sdpa(op, cls):
    h = op.num_heads
    return cls(op.dim, op.dim // h, op.dim // h, h, dropout=0.0)


def _outlook_unfold_fixed(op, theirs):
    # the catalogue builds nn.Unfold(kernel_size, padding, stride) = (kernel, dilation, padding)
    theirs.unflod = nn.Unfold(kernel_size=op.kernel_size, padding=op.padding, stride=op.stride)


PEERS: dict[str, Peer] = {
    'ExternalAttention': Peer('ExternalAttention', lambda op, cls: cls(d_model=op.dim, S=op.S)),
    'OutlookAttention': Peer(
        'OutlookAttention',
        lambda op, cls: cls(dim=op.dim, num_heads=op.num_heads, kernel_size=op.kernel_size,
                            padding=op.padding, stride=op.stride, qkv_bias=op.v.bias is not None,
                            attn_drop=0.0),
        inputs=lambda x: (to_channels_last(x),), output=from_channels_last,
        copy=lambda op, theirs: theirs.load_state_dict(
            {k.replace('v.', 'v_pj.', 1) if k.startswith('v.') else k: v for k, v in op.state_dict().items()}),
        fix=lambda op, theirs: _outlook_unfold_fixed(op, theirs) if op.stride > 1 else None),
    'SelfAttention': Peer('SelfAttention', _sdpa, cls='ScaledDotProductAttention',
                          inputs=lambda x: (x, x, x), copy=_copy_sdpa),
    'MultiHeadAttention': Peer('SelfAttention', _sdpa, cls='ScaledDotProductAttention',
                               inputs=lambda x: (x, x, x), copy=_copy_sdpa),
    'CrissCrossAttention': Peer(
        'CrissCrossAttention', lambda op, cls: cls(op.dim),
        copy=lambda op, theirs: theirs.load_state_dict(
            {('gamma' if k == 'gamma.scale' else k): (v.view(1) if k == 'gamma.scale' else v)
             for k, v in op.state_dict().items()})),
}


def catalogue_class(peer: Peer) -> type:
    """The catalogue class of ``peer`` (``ImportError`` when fightingcv-attention is absent)."""
    mod = importlib.import_module(f'fightingcv_attention.attention.{peer.module}')
    return getattr(mod, peer.cls or peer.module)


def build_peer(op: nn.Module, copy_weights: bool = True, fixed: bool = True) -> Optional[nn.Module]:
    """The catalogue module standing beside ``op`` (weights copied, known defect fixed), or None
    when the op has no counterpart. Its mode (train / eval) follows ``op``."""
    peer = PEERS.get(type(op).__name__)
    if peer is None:
        return None
    theirs = peer.build(op, catalogue_class(peer)).to(next(op.parameters()).dtype)
    if fixed and peer.fix is not None:
        peer.fix(op, theirs)
    if copy_weights:
        peer.copy(op, theirs)
    return theirs.train(op.training)


def run_peer(op: nn.Module, theirs: nn.Module, x: Tensor) -> Tensor:
    """``theirs`` on our input ``x``, its output in our layout."""
    peer = PEERS[type(op).__name__]
    return peer.output(theirs(*peer.inputs(x)))
