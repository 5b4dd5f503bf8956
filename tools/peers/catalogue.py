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
    theirs = peer.build(op, catalogue_class(peer))
    param = next(op.parameters(), None)            # parameter-free ops (SimAM) keep the default dtype
    if param is not None:
        theirs = theirs.to(param.dtype)
    if fixed and peer.fix is not None:
        peer.fix(op, theirs)
    if copy_weights:
        peer.copy(op, theirs)
    return theirs.train(op.training)


def run_peer(op: nn.Module, theirs: nn.Module, x: Tensor) -> Tensor:
    """``theirs`` on our input ``x``, its output in our layout."""
    peer = PEERS[type(op).__name__]
    return peer.output(theirs(*peer.inputs(x)))


# --- spatial ---
def _copy_cbam(op, theirs):
    """Our bias-free MLP into its 1x1 convolutions; our spatial planes [avg; max] into its [max; avg]."""
    theirs.load_state_dict({'ca.se.0.weight': op.fc1.weight[:, :, None, None],
                            'ca.se.2.weight': op.fc2.weight[:, :, None, None],
                            'sa.conv.weight': op.conv.weight.flip(1), 'sa.conv.bias': op.conv.bias})


def _cbam_without_residual(op, theirs):
    # its CBAMBlock returns F'' + F: drop the added input to compare the module's output F''
    forward = theirs.forward
    theirs.forward = lambda x: forward(x) - x


def _bam_paper_layers(op, theirs):
    """The paper's BAM from the catalogue's own classes: one hidden layer in the channel MLP, two
    3 x 3 convolutions of dilation d padded by d (so the map keeps its size), a BN closing each
    branch."""
    mod = importlib.import_module('fightingcv_attention.attention.BAM')
    theirs.ca = mod.ChannelAttention(op.dim, op.reduction, num_layers=1)
    theirs.ca.ca.add_module('bn_final', nn.BatchNorm1d(op.dim))
    theirs.sa = mod.SpatialAttention(op.dim, op.reduction, num_layers=2, dia_val=op.dilation)
    for m in theirs.sa.sa.children():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            m.padding = m.dilation            # it pads by 1 whatever the dilation
    theirs.sa.sa.add_module('bn_final', nn.BatchNorm2d(1))


def _with_state(module: nn.Module) -> list:
    return [m for m in module.modules() if not list(m.children()) and m.state_dict()]


def _copy_in_order(op, theirs):
    """Layer by layer, in registration order (the same layers in the same order on both sides)."""
    ours, peer = _with_state(op), _with_state(theirs)
    if [type(m) for m in ours] != [type(m) for m in peer]:
        raise ValueError(f'{type(op).__name__}: catalogue layers {[type(m).__name__ for m in peer]} do not '
                         f'match ours {[type(m).__name__ for m in ours]}')
    for a, b in zip(ours, peer):
        b.load_state_dict(a.state_dict())


def _triplet(op, cls):
    theirs = cls(no_spatial=op.no_spatial)
    k = op.kernel_size
    for gate in (theirs.cw, theirs.hc) + (() if op.no_spatial else (theirs.hw,)):
        gate.conv.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)      # the catalogue fixes k = 7
    return theirs


def _psa(op, cls):
    mod = importlib.import_module(cls.__module__)
    return getattr(mod, f'{op.mode.capitalize()}PolarizedSelfAttention')(channel=op.dim)


PEERS.update({
    'CBAM': Peer('CBAM', lambda op, cls: cls(channel=op.dim, reduction=op.reduction, kernel_size=op.kernel_size),
                 cls='CBAMBlock', copy=_copy_cbam, fix=_cbam_without_residual),
    'BAM': Peer('BAM', lambda op, cls: cls(channel=op.dim, reduction=op.reduction, dia_val=op.dilation),
                cls='BAMBlock', copy=_copy_in_order, fix=_bam_paper_layers),
    'SimAM': Peer('SimAM', lambda op, cls: cls(e_lambda=op.e_lambda)),
    'TripletAttention': Peer('TripletAttention', _triplet, copy=_copy_in_order),
    'CoordAttention': Peer('CoordAttention', lambda op, cls: cls(op.dim, op.dim, reduction=op.reduction),
                           cls='CoordAtt', copy=_copy_in_order),
    'PolarizedSelfAttention': Peer('PolarizedSelfAttention', _psa, cls='ParallelPolarizedSelfAttention'),
})
