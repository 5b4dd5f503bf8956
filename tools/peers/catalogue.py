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


# --- nonlocal_ and pooling ---
def _no_copy(op: nn.Module, theirs: nn.Module) -> None:
    """The catalogue module's structure differs from the paper's: no weight mapping (its defect tests
    in tests/ops/test_nonlocal.py compare behaviour instead)."""


class SizedPeer(nn.Module):
    """A catalogue module that fixes the map size at construction, built for each input's H x W on
    first sight (same device, dtype and train/eval mode as the input and this wrapper)."""

    def __init__(self, make: Callable[[int, int], nn.Module]):
        super().__init__()
        self.make = make
        self.built = nn.ModuleDict()

    def forward(self, x: Tensor) -> Tensor:
        key = f'{x.shape[-2]}x{x.shape[-1]}'
        if key not in self.built:
            self.built[key] = self.make(x.shape[-2], x.shape[-1]).to(x.device, x.dtype).train(self.training)
        return self.built[key](x)


def _copy_pam(op: nn.Module, theirs: nn.Module) -> None:
    """Our PAM inside the catalogue's: its 3x3 conv and output projection set to the identity, our
    C/8-wide query/key in the first rows of its C-wide ones (the query multiplied by sqrt(C) to undo
    its 1/sqrt(d_k)), our value conv as its value projection. It then returns the attention term of
    ours as tokens (B, N, C), without the residual and gamma it lacks."""
    c, r = op.dim, op.query_conv.out_channels
    with torch.no_grad():
        theirs.cnn.weight.zero_()
        theirs.cnn.weight[:, :, 1, 1].copy_(torch.eye(c))
        theirs.cnn.bias.zero_()
        for fc, conv, scale in ((theirs.pa.fc_q, op.query_conv, c ** 0.5), (theirs.pa.fc_k, op.key_conv, 1.0)):
            fc.weight.zero_()
            fc.bias.zero_()
            fc.weight[:r].copy_(conv.weight.view(r, c) * scale)
            fc.bias[:r].copy_(conv.bias * scale)
        theirs.pa.fc_v.weight.copy_(op.value_conv.weight.view(c, c))
        theirs.pa.fc_v.bias.copy_(op.value_conv.bias)
        theirs.pa.fc_o.weight.copy_(torch.eye(c))
        theirs.pa.fc_o.bias.zero_()


def _danet_sized(cls: type, dim: int) -> SizedPeer:
    """The catalogue's DAModule for ``dim`` channels: it ignores its d_model, H and W arguments (512
    channels, 7 x 7 always), so its two branches are rebuilt with them, per map size."""
    module = importlib.import_module(cls.__module__)

    def make(h, w):
        theirs = cls(d_model=dim, kernel_size=3, H=h, W=w)
        theirs.position_attention_module = module.PositionAttentionModule(d_model=dim, kernel_size=3, H=h, W=w)
        theirs.channel_attention_module = module.ChannelAttentionModule(d_model=dim, kernel_size=3, H=h, W=w)
        return theirs
    return SizedPeer(make)


class _SoftmaxAxes:
    """``torch.nn.functional`` as one catalogue module sees it, except that its softmax calls made
    without ``dim`` get the next axis of ``dims``."""

    def __init__(self, functional, dims):
        self._functional, self._dims = functional, iter(dims)

    def __getattr__(self, name):
        return getattr(self._functional, name)

    def softmax(self, t, dim=None, **kwargs):
        return self._functional.softmax(t, dim=next(self._dims) if dim is None else dim, **kwargs)


def _a2_softmax_axes(op: nn.Module, theirs: nn.Module) -> None:
    """The catalogue's own forward with its two axis-less softmaxes given the paper's axes: the
    gather maps over the positions (-1), then the attention vectors over c_n (1). Without ``dim``
    torch picks dim 0 of these 3-D tensors: the batch."""
    module = importlib.import_module(type(theirs).__module__)
    forward = type(theirs).forward

    def fixed_forward(x):
        functional = module.F
        module.F = _SoftmaxAxes(functional, (-1, 1))
        try:
            return forward(theirs, x)
        finally:
            module.F = functional
    theirs.forward = fixed_forward


def _copy_csra(op: nn.Module, theirs: nn.Module) -> None:
    """Our first head's classifier as the catalogue's 1x1 convolution (its only weight)."""
    with torch.no_grad():
        theirs.fc.weight.copy_(op.classifier.weight[:op.num_classes].view(op.num_classes, op.dim, 1, 1))


PEERS.update({
    'PositionAttention': Peer('DANet', lambda op, cls: cls(d_model=op.dim, kernel_size=3), cls='PositionAttentionModule',
                              copy=_copy_pam),
    'ChannelAttention': Peer('DANet', lambda op, cls: SizedPeer(lambda h, w: cls(d_model=op.dim, kernel_size=3, H=h, W=w)),
                             cls='ChannelAttentionModule', copy=_no_copy),
    'DualAttention': Peer('DANet', lambda op, cls: _danet_sized(cls, op.dim), cls='DAModule', copy=_no_copy),
    'DoubleAttention': Peer('A2Atttention', lambda op, cls: cls(op.dim, op.c_m, op.c_n, op.reconstruct),
                            cls='DoubleAttention', fix=_a2_softmax_axes),
    'CoTAttention': Peer('CoTAttention', lambda op, cls: cls(dim=op.dim, kernel_size=op.kernel_size), copy=_no_copy),
    'ACmix': Peer('ACmixAttention', lambda op, cls: cls(op.dim, op.dim, kernel_att=op.kernel_att, head=op.num_heads,
                                                        kernel_conv=op.kernel_conv, stride=1, dilation=1),
                  cls='ACmix'),
    'ResidualAttention': Peer('ResidualAttention', lambda op, cls: cls(channel=op.dim, num_class=op.num_classes,
                                                                       la=op.lam),
                              inputs=lambda x: (x.transpose(1, 2).unsqueeze(-1),), copy=_copy_csra),
})


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
