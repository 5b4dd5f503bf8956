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


# --- channel ---
def _copy_se(op, theirs):
    theirs.load_state_dict({'fc.0.weight': op.fc1.weight, 'fc.2.weight': op.fc2.weight})


def _copy_conv_bn(conv: nn.Module, norm: nn.Module, theirs_conv: nn.Module, theirs_norm: nn.Module) -> None:
    """A bias-free conv + norm of ours into the catalogue's biased conv (bias 0) + BN."""
    theirs_conv.weight.copy_(conv.weight.view_as(theirs_conv.weight))
    if theirs_conv.bias is not None:
        theirs_conv.bias.zero_()
    theirs_norm.load_state_dict(norm.state_dict())


def _sk(op, cls):
    theirs = cls(channel=op.dim, kernels=list(op.kernels), reduction=op.reduction, group=op.groups, L=op.L)
    for branch, conv in zip(theirs.convs, (b[0] for b in op.branches)):   # our geometry (dilated 3x3)
        branch.conv = nn.Conv2d(op.dim, op.dim, conv.kernel_size, padding=conv.padding,
                                dilation=conv.dilation, groups=op.groups)
    return theirs


def _sk_fuse_fixed(op, theirs):
    # the paper's fuse step z = ReLU(BN(W s)); the catalogue has the linear layer alone
    theirs.fc = nn.Sequential(theirs.fc, nn.BatchNorm1d(op.d), nn.ReLU())


def _copy_sk(op, theirs):
    c, d = op.dim, op.d
    with torch.no_grad():
        for ours, branch in zip(op.branches, theirs.convs):
            _copy_conv_bn(ours[0], ours[1], branch.conv, branch.bn)
        if isinstance(theirs.fc, nn.Sequential):
            _copy_conv_bn(op.fc, op.fc_norm, theirs.fc[0], theirs.fc[1])
        else:
            theirs.fc.weight.copy_(op.fc.weight.view(d, c))
            theirs.fc.bias.zero_()
        for m, fc in enumerate(theirs.fcs):
            fc.weight.copy_(op.select.weight[m * c:(m + 1) * c].view(c, d))
            fc.bias.zero_()


def _eca_without_bias(op, theirs):
    theirs.conv.bias = None     # the official ECA convolution has no bias


def _copy_eca(op, theirs):
    with torch.no_grad():
        theirs.conv.weight.copy_(op.conv.weight)


class _OnACopy(nn.Module):
    """``module`` applied to a copy of its input (for catalogue code that writes into its input)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x.clone())


def _psa_registered_and_out_of_place(op, theirs):
    """The same computation with its defects out of the way: the list-held convolutions and SE
    blocks registered (so .to() / dtype reach them); each branch convolution reads a copy of its
    split, and the forward a copy of its input, so its in-place writes neither overwrite the
    caller's tensor nor the tensors autograd saved."""
    theirs.convs = nn.ModuleList(_OnACopy(conv) for conv in theirs.convs)
    theirs.se_blocks = nn.ModuleList(theirs.se_blocks)
    forward = theirs.forward
    theirs.forward = lambda x: forward(x.clone())


def _no_copy(op, theirs):
    """Structures differ (see the family's defect tests): the peer stands beside ours for cost only."""


def _copy_parnet(op, theirs):
    """Our weights into the catalogue block; it has no skip norm (its defect), biases set to 0."""
    with torch.no_grad():
        _copy_conv_bn(op.conv1x1[0], op.conv1x1[1], theirs.conv1x1[0], theirs.conv1x1[1])
        _copy_conv_bn(op.conv3x3[0], op.conv3x3[1], theirs.conv3x3[0], theirs.conv3x3[1])
        theirs.sse[1].weight.copy_(op.sse.weight)
        theirs.sse[1].bias.zero_()


def _s2_split_attention_for_width(op, theirs):
    # the catalogue builds SplitAttention() for 512 channels whatever its width
    mod = importlib.import_module('fightingcv_attention.attention.S2Attention')
    theirs.split_attention = mod.SplitAttention(channel=op.dim)


def _copy_s2(op, theirs):
    theirs.load_state_dict({'mlp1.weight': op.mlp1.weight, 'mlp1.bias': op.mlp1.bias,
                            'mlp2.weight': op.mlp2.weight, 'mlp2.bias': op.mlp2.bias,
                            'split_attention.mlp1.weight': op.attn_mlp1.weight,
                            'split_attention.mlp2.weight': op.attn_mlp2.weight})


PEERS.update({
    'SEAttention': Peer('SEAttention', lambda op, cls: cls(channel=op.dim, reduction=op.reduction), copy=_copy_se),
    'SKAttention': Peer('SKAttention', _sk, copy=_copy_sk, fix=_sk_fuse_fixed),
    'ECAAttention': Peer('ECAAttention', lambda op, cls: cls(kernel_size=op.kernel_size), copy=_copy_eca,
                         fix=_eca_without_bias),
    'SpatialGroupEnhance': Peer('SGE', lambda op, cls: cls(groups=op.groups), cls='SpatialGroupEnhance'),
    'ShuffleAttention': Peer('ShuffleAttention', lambda op, cls: cls(channel=op.dim, G=op.groups)),
    'PyramidSplitAttention': Peer('PSA', lambda op, cls: cls(channel=op.dim, reduction=op.reduction,
                                                              S=len(op.kernels)),
                                  copy=_no_copy, fix=_psa_registered_and_out_of_place),
    'ParNetAttention': Peer('ParNetAttention', lambda op, cls: cls(channel=op.dim), copy=_copy_parnet),
    'S2Attention': Peer('S2Attention', lambda op, cls: cls(channels=op.dim), copy=_copy_s2,
                        fix=_s2_split_attention_for_width),
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
