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


# --- efficient and mixer families (attn_ops/ops/efficient.py, attn_ops/ops/mixer.py) ---
class SizedPeer(nn.Module):
    """A catalogue module whose constructor fixes the input size (``AFT_FULL``'s n, ``GlobalFilter``'s
    h x w), standing in for it at any size.

    ``make(x)`` builds the catalogue module for our input ``x``, again whenever ``key(x)`` changes
    (the first call of a size, i.e. the benchmark's warm-up); once ``source`` is set (our op, by the
    peer's ``copy``), ``load(source, module, x)`` copies its weights into each build; ``call(module,
    x)`` runs the module on our input and returns our layout.
    """

    def __init__(self, make: Callable, load: Callable, key: Callable = lambda x: tuple(x.shape[1:]),
                 call: Callable = lambda module, x: module(x)):
        super().__init__()
        self.make, self.load, self.key, self.call = make, load, key, call
        self.inner: Optional[nn.Module] = None
        self.size = None
        self.__dict__['source'] = None   # our op: not a submodule of the peer

    def forward(self, x: Tensor) -> Tensor:
        if self.inner is None or self.key(x) != self.size:
            inner = self.make(x).to(x.device, x.dtype).train(self.training)
            if self.source is not None:
                self.load(self.source, inner, x)
            self.inner, self.size = inner, self.key(x)
        return self.call(self.inner, x)


def _set_source(op: nn.Module, theirs: SizedPeer) -> None:
    theirs.__dict__['source'] = op


def _copy_linears(pairs) -> None:
    """(catalogue linear, weight, bias or None) triples: weights copied, missing biases zeroed."""
    with torch.no_grad():
        for layer, weight, bias in pairs:
            layer.weight.copy_(weight.view_as(layer.weight))
            if layer.bias is not None:
                layer.bias.copy_(bias.reshape(layer.bias.shape)) if bias is not None else layer.bias.zero_()


def _qkv_pairs(op: nn.Module, theirs: nn.Module):
    weights = op.qkv.weight.chunk(3)
    biases = op.qkv.bias.chunk(3) if op.qkv.bias is not None else (None,) * 3
    return [(getattr(theirs, f'fc_{n}'), w, b) for n, w, b in zip('qkv', weights, biases)]


def _load_aft(op: nn.Module, theirs: nn.Module, x: Tensor) -> None:
    _copy_linears(_qkv_pairs(op, theirs))
    if isinstance(theirs.position_biases, nn.Parameter):   # AFT-full; the simple form keeps its zeros
        with torch.no_grad():
            theirs.position_biases.copy_(op.position_bias(x.shape[1]))


def _aft(simple: bool):
    return lambda op, cls: SizedPeer(lambda x: cls(d_model=op.dim, n=x.shape[1], simple=simple), _load_aft,
                                     key=lambda x: x.shape[1])


def _copy_emsa(op: nn.Module, theirs: nn.Module) -> None:
    k, v = op.kv.weight.chunk(2)
    kb, vb = op.kv.bias.chunk(2) if op.kv.bias is not None else (None, None)
    _copy_linears([(theirs.fc_q, op.q.weight, op.q.bias), (theirs.fc_k, k, kb), (theirs.fc_v, v, vb),
                   (theirs.fc_o, op.proj.weight, op.proj.bias)])
    if op.sr_ratio > 1:
        theirs.sr_conv.load_state_dict(op.sr.state_dict())
        theirs.sr_ln.load_state_dict(op.sr_norm.state_dict())
    if op.apply_transform:
        theirs.transform.conv.load_state_dict(op.transform_conv.state_dict())


def _copy_muse(op: nn.Module, theirs: nn.Module) -> None:
    _copy_sdpa(op, theirs)
    with torch.no_grad():
        for branch, name in zip(op.convs, ('conv1', 'conv3', 'conv5')):
            conv = getattr(theirs, name)
            if isinstance(branch[0], nn.Conv1d):
                conv.depth_conv.load_state_dict(branch[0].state_dict())
            conv.pointwise_conv.load_state_dict(branch[1].state_dict())
        theirs.dy_paras.copy_(op.alpha)


def _muse(op, cls):
    if op.kernel_sizes != (1, 3, 5):
        raise ValueError(f'the catalogue MUSEAttention has kernel sizes (1, 3, 5) only, got {op.kernel_sizes}')
    d = op.dim // op.num_heads
    return cls(op.dim, d, d, op.num_heads, dropout=0.0)


def _copy_mobilevitv2(op: nn.Module, theirs: nn.Module) -> None:
    k, v = op.kv.weight.chunk(2)
    kb, vb = op.kv.bias.chunk(2) if op.kv.bias is not None else (None, None)
    fc_v = theirs.fc_v[0] if isinstance(theirs.fc_v, nn.Sequential) else theirs.fc_v
    _copy_linears([(theirs.fc_i, op.to_score.weight, op.to_score.bias), (theirs.fc_k, k, kb), (fc_v, v, vb),
                   (theirs.fc_o, op.out_proj.weight, op.out_proj.bias)])


def _mobilevitv2_relu(op, theirs) -> None:
    # MobileViTv2 Eq. 5 (ml-cvnets: F.relu(value)): the catalogue multiplies the raw values
    theirs.fc_v = nn.Sequential(theirs.fc_v, nn.ReLU())


def _mobilevit(op, cls):
    """The catalogue block with our sizes; its transformer (depth 3, 8 heads of 64, FFN 1024 hard-coded)
    rebuilt from its own ``Transformer`` class with ours."""
    theirs = cls(in_channel=op.dim, dim=op.transformer_dim, kernel_size=op.kernel_size, patch_size=op.patch_size)
    transformer = importlib.import_module('fightingcv_attention.attention.MobileViTAttention').Transformer
    d = op.transformer_dim
    theirs.trans = transformer(dim=d, depth=op.depth, heads=op.num_heads, head_dim=d // op.num_heads,
                               mlp_dim=op.ffn_dim)
    return theirs


def _mobilevit_layers(op, theirs) -> None:
    """The official block's layers the catalogue lacks: norm + SiLU after the n x n and output 1x1
    convolutions (bias-free convolutions), a qkv bias, a LayerNorm after the transformer."""
    c, d, k = op.dim, op.transformer_dim, op.kernel_size

    def cbs(c_in, c_out, size):
        return nn.Sequential(nn.Conv2d(c_in, c_out, size, padding=size // 2, bias=False), nn.BatchNorm2d(c_out),
                             nn.SiLU())
    theirs.conv1, theirs.conv2 = cbs(c, c, k), nn.Conv2d(c, d, 1, bias=False)
    theirs.conv3, theirs.conv4 = cbs(d, c, 1), cbs(2 * c, c, k)
    for attn, _ in theirs.trans.layers:
        attn.fn.to_qkv = nn.Linear(d, 3 * d, bias=True)
    theirs.trans = nn.Sequential(theirs.trans, nn.LayerNorm(d))


def _copy_mobilevit(op: nn.Module, theirs: nn.Module) -> None:
    with torch.no_grad():
        for conv, ours in ((theirs.conv1, op.local[0]), (theirs.conv3, op.conv_proj), (theirs.conv4, op.fusion)):
            if isinstance(conv, nn.Sequential):
                conv.load_state_dict(ours.state_dict())
            else:
                conv.weight.copy_(ours[0].weight)
                conv.bias.zero_()
        theirs.conv2.weight.copy_(op.local[1].weight)
        if theirs.conv2.bias is not None:
            theirs.conv2.bias.zero_()
        fixed = isinstance(theirs.trans, nn.Sequential)
        transformer = theirs.trans[0] if fixed else theirs.trans
        for (attn, ffn), layer in zip(transformer.layers, op.layers):
            attn.ln.load_state_dict(layer.norm1.state_dict())
            _copy_linears([(attn.fn.to_qkv, layer.qkv.weight, layer.qkv.bias),
                           (attn.fn.to_out[0], layer.proj.weight, layer.proj.bias),
                           (ffn.fn.net[0], layer.fc1.weight, layer.fc1.bias),
                           (ffn.fn.net[3], layer.fc2.weight, layer.fc2.bias)])
            ffn.ln.load_state_dict(layer.norm2.state_dict())
        if fixed:
            theirs.trans[1].load_state_dict(op.norm.state_dict())


def _copy_vip(op: nn.Module, theirs: nn.Module) -> None:
    """Same names, but the re-weighting outputs per channel are ordered (C, W, H) in the catalogue
    and (H, W, C) in ViP: the rows of the last linear are flipped within each channel's triple."""
    c = op.dim
    fc2 = op.reweight[2]
    _copy_linears([(theirs.mlp_c, op.mlp_c.weight, op.mlp_c.bias), (theirs.mlp_h, op.mlp_h.weight, op.mlp_h.bias),
                   (theirs.mlp_w, op.mlp_w.weight, op.mlp_w.bias), (theirs.proj, op.proj.weight, op.proj.bias),
                   (theirs.reweighting.fc1, op.reweight[0].weight, op.reweight[0].bias),
                   (theirs.reweighting.fc2, fc2.weight.view(c, 3, -1).flip(1), fc2.bias.view(c, 3).flip(1))])


def _load_global_filter(op: nn.Module, theirs: nn.Module, x: Tensor) -> None:
    with torch.no_grad():   # our filter at this size (the reference one, or resized), (h, w, C, 2)
        theirs.complex_weight.copy_(torch.view_as_real(op.filter(*x.shape[2:])).permute(1, 2, 0, 3))


def _global_filter(op, cls):
    """The catalogue filter built for each map size (it has one fixed size), run on tokens."""
    def call(module, x):
        b, c, h, w = x.shape
        return module(x.flatten(2).transpose(1, 2), spatial_size=(h, w)).transpose(1, 2).reshape(b, c, h, w)
    return SizedPeer(lambda x: cls(op.dim, h=x.shape[2], w=x.shape[3] // 2 + 1), _load_global_filter, call=call)


def _import_gfnet() -> None:
    """``gfnet.py`` imports timm (a torchvision-bound package we do not install) for ``DropPath`` and
    ``to_2tuple``, which only its ``PatchEmbed`` / ``Block`` / ``GFNet`` use; ``GlobalFilter`` needs
    torch alone. Import it with a stand-in for those two names, removed again afterwards."""
    import sys
    import types
    name = 'fightingcv_attention.attention.gfnet'
    if name in sys.modules:
        return
    try:
        importlib.import_module('timm')
    except ImportError:
        stubs = {n: types.ModuleType(n) for n in ('timm', 'timm.models', 'timm.models.layers')}
        stubs['timm.models.layers'].DropPath = nn.Identity
        stubs['timm.models.layers'].to_2tuple = lambda v: v if isinstance(v, tuple) else (v, v)
        sys.modules.update(stubs)
        try:
            importlib.import_module(name)
        finally:
            for n in stubs:
                sys.modules.pop(n, None)


try:
    _import_gfnet()
except ImportError:   # fightingcv-attention absent: no peers
    pass

PEERS.update({
    'AFTFull': Peer('AFT', _aft(simple=False), cls='AFT_FULL', copy=_set_source),
    'AFTSimple': Peer('AFT', _aft(simple=True), cls='AFT_FULL', copy=_set_source),
    'EMSA': Peer('EMSA', lambda op, cls: cls(op.dim, op.dim // op.num_heads, op.dim // op.num_heads, op.num_heads,
                                             dropout=0.0, H=1, W=1, ratio=op.sr_ratio,
                                             apply_transform=op.apply_transform),
                 inputs=lambda x: (x, x, x), copy=_copy_emsa),
    'MUSEAttention': Peer('MUSEAttention', _muse, inputs=lambda x: (x, x, x), copy=_copy_muse),
    'UFOAttention': Peer('UFOAttention', lambda op, cls: cls(op.dim, op.dim // op.num_heads, op.dim // op.num_heads,
                                                             op.num_heads, dropout=0.0),
                         inputs=lambda x: (x, x, x),
                         copy=lambda op, theirs: (_copy_sdpa(op, theirs), theirs.gamma.data.copy_(op.gamma))),
    'MobileViTv2Attention': Peer('MobileViTv2Attention', lambda op, cls: cls(op.dim), copy=_copy_mobilevitv2,
                                 fix=_mobilevitv2_relu),
    'SimplifiedSelfAttention': Peer(
        'SimplifiedSelfAttention', lambda op, cls: cls(op.dim, op.num_heads, dropout=0.0),
        cls='SimplifiedScaledDotProductAttention', inputs=lambda x: (x, x, x),
        copy=lambda op, theirs: _copy_linears([(theirs.fc_o, op.proj.weight, op.proj.bias)])),
    'MobileViTAttention': Peer('MobileViTAttention', _mobilevit, copy=_copy_mobilevit, fix=_mobilevit_layers),
    'WeightedPermuteMLP': Peer('ViP', lambda op, cls: cls(op.dim, op.segment_dim, qkv_bias=op.mlp_c.bias is not None),
                               cls='WeightedPermuteMLP', inputs=lambda x: (to_channels_last(x),),
                               output=from_channels_last, copy=_copy_vip),
    'GlobalFilter': Peer('gfnet', _global_filter, cls='GlobalFilter', copy=_set_source),
})
