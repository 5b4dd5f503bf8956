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



# --- windowed, axial and deformable (attn_ops/ops/window.py, axial.py, deformable.py) ---
class _DropPath(nn.Module):
    """Stochastic depth, for the timm stand-in below (every peer runs it at rate 0)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if not self.training or self.drop_prob == 0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.drop_prob)
        return x * keep / (1 - self.drop_prob)


def _import_with_timm_layers(names) -> None:
    """DAT.py, Crossformer.py, MOATransformer.py (and gfnet.py) import ``DropPath``, ``to_2tuple`` and
    ``trunc_normal_`` from ``timm.models.layers``; timm needs torchvision, which this project never
    installs. Without timm, these catalogue modules are imported once here with a stand-in providing
    the three, which is removed from ``sys.modules`` right after (nothing else sees a fake timm)."""
    import sys
    import types
    try:
        import timm.models.layers  # noqa: F401
        return
    except ImportError:
        pass
    layers = types.ModuleType('timm.models.layers')
    layers.DropPath = _DropPath
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = nn.init.trunc_normal_
    models, root = types.ModuleType('timm.models'), types.ModuleType('timm')
    models.layers, root.models = layers, models
    fake = {'timm': root, 'timm.models': models, 'timm.models.layers': layers}
    sys.modules.update(fake)
    try:
        for name in names:
            try:
                importlib.import_module(f'fightingcv_attention.attention.{name}')
            except ImportError:       # fightingcv-attention (or einops) absent: no peers
                pass
    finally:
        for key in fake:
            sys.modules.pop(key, None)


_import_with_timm_layers(('DAT', 'Crossformer', 'MOATransformer', 'gfnet'))


def _sibling(cls: type, name: str) -> type:
    """Another class of the catalogue module that defines ``cls``."""
    import sys
    return getattr(sys.modules[cls.__module__], name)


def _pad_to(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad a map (bottom, right) to sides divisible by ``multiple`` (the catalogue's window
    modules need it; the tests use sizes that need none, the benchmark's may not)."""
    return nn.functional.pad(x, (0, (-x.shape[3]) % multiple, 0, (-x.shape[2]) % multiple))


class _PerSize(nn.Module):
    """A catalogue module that fixes the map size at construction, one instance per map size, all
    sharing the weights of ``self.core`` (built for the op's own size); ``make(size)`` builds one."""

    def __init__(self, core: nn.Module):
        super().__init__()
        self.core = core
        self._sized = {}

    def at(self, size, make) -> nn.Module:
        size = tuple(size)
        if size not in self._sized:
            self._sized[size] = make(size)
        return self._sized[size].to(next(self.core.parameters()))


class _DATWindowPeer(_PerSize):
    """DAT's ``LocalAttention`` (shift 0) or ``ShiftWindowAttention`` (whose shift mask is built for
    one map size), on maps padded to a multiple of the window as Swin's block does."""

    def __init__(self, op, cls):
        super().__init__(cls(op.dim, op.num_heads, op.window_size, 0.0, 0.0))
        self.window, self.shift, self.shifted = op.window_size, op.shift, _sibling(cls, 'ShiftWindowAttention')

    def _make(self, size):
        core = self.core
        layer = self.shifted(core.proj_qkv.in_features, core.heads, self.window, 0.0, 0.0, self.shift, size)
        layer.proj_qkv, layer.proj_out = core.proj_qkv, core.proj_out
        layer.relative_position_bias_table = core.relative_position_bias_table
        return layer

    def forward(self, x):
        xp = _pad_to(x, self.window)
        layer = self.at(xp.shape[2:], self._make) if self.shift else self.core
        return layer(xp)[0][:, :, :x.shape[2], :x.shape[3]]


def _copy_window(op, theirs):
    with torch.no_grad():
        theirs.core.proj_qkv.load_state_dict(op.qkv.state_dict())
        theirs.core.proj_out.load_state_dict(op.proj.state_dict())
        theirs.core.relative_position_bias_table.copy_(op.relative_position_bias_table)


def _copy_halo(op, theirs):
    """Our relative tables hold the 2(b + h) - 1 offsets that occur; the catalogue's 2(b + 2h) - 1 rows
    are read from row 2h on (its first 2h rows are never used)."""
    h = op.halo_size
    with torch.no_grad():
        theirs.to_q.weight.copy_(op.q.weight)
        theirs.to_kv.weight.copy_(op.kv.weight)
        theirs.to_out.load_state_dict(op.proj.state_dict())
        theirs.rel_pos_emb.rel_height[2 * h:].copy_(op.rel_height)
        theirs.rel_pos_emb.rel_width[2 * h:].copy_(op.rel_width)


def _halo_mask_inverted(op, theirs):
    """The catalogue's ``sim.masked_fill_(mask, -max)`` takes a mask that is True at the map's pixels;
    for this module only, the ``repeat`` that builds it returns its complement (the padding)."""
    import sys
    module = sys.modules[type(theirs).__module__]
    forward = theirs.forward

    def fixed(x):
        repeat = module.repeat
        module.repeat = lambda t, *a, **kw: ~repeat(t, *a, **kw).bool()
        try:
            return forward(x)
        finally:
            module.repeat = repeat
    theirs.forward = fixed


class _CrossFormerPeer(_PerSize):
    """Crossformer.py's ``Attention`` inside its ``CrossFormerBlock``, which groups the map (SDA, or
    LDA at interval H / G) for one map size; the block's ``norm1`` is an identity and its MLP outputs
    zero, so ``block(x) - x`` is the attention's output. Maps are padded to a multiple of G."""

    def __init__(self, op, cls):
        super().__init__(cls(op.dim, (op.group_size,) * 2, op.num_heads, qkv_bias=op.qkv.bias is not None))
        self.group, self.lda, self.block = op.group_size, op.lsda == 'lda', _sibling(cls, 'CrossFormerBlock')

    def _make(self, size):
        block = self.block(self.core.dim, size, self.core.num_heads, group_size=self.group, lsda_flag=int(self.lda),
                           qkv_bias=self.core.qkv.bias is not None)
        block.norm1 = nn.Identity()
        nn.init.zeros_(block.mlp.fc2.weight)
        nn.init.zeros_(block.mlp.fc2.bias)
        if block.group_size == self.group:
            block.attn = self.core
        else:   # a map no larger than the group: the block shrinks its group, keep the weights
            block.attn.qkv, block.attn.proj, block.attn.pos = self.core.qkv, self.core.proj, self.core.pos
        return block

    def forward(self, x):
        xp = _pad_to(x, self.group)
        tokens = xp.flatten(2).transpose(1, 2)
        y = (self.at(xp.shape[2:], self._make)(tokens) - tokens).transpose(1, 2).reshape(xp.shape)
        return y[:, :, :x.shape[2], :x.shape[3]]


def _crossformer_dpb_at_paper_width(op, theirs):
    """The catalogue builds ``DynamicPosBias(dim // 4)``, whose hidden width is (dim // 4) // 4."""
    dpb = _sibling(type(theirs.core), 'DynamicPosBias')
    theirs.core.pos = dpb(op.dim, op.num_heads, residual=False)


def _copy_crossformer(op, theirs):
    theirs.core.load_state_dict({**theirs.core.state_dict(), **op.state_dict()})


class _MOAPeer(_PerSize):
    """MOATransformer.py's ``GlobalAttention``, built for one map size (its bias table), called as its
    layer calls it with (tokens, H, W) and returning one vector per window, given here to the window's
    pixels. Our map goes in as ``x.reshape(B, H W, C)``: the memory its ``reshape(-1, C, H, W)`` reads
    back as our map (its caller hands it (B, H W, C) tokens, which that reshape scrambles)."""

    def __init__(self, op, cls):
        size = (op.grid_size * op.window_size,) * 2
        super().__init__(cls(op.dim, (op.window_size,) * 2, size, op.num_heads, qkv_bias=op.q.bias is not None))
        self.window, self.cls = op.window_size, cls

    def _make(self, size):
        layer = self.cls(self.core.dim, self.core.window_size, size, self.core.num_heads)
        for name in ('pre_conv', 'q', 'kv', 'proj', 'queryembedding', 'keyembedding'):
            setattr(layer, name, getattr(self.core, name))
        layer.query_dim, layer.key_dim = self.core.query_dim, self.core.key_dim
        return layer

    def forward(self, x):
        xp = _pad_to(x, self.window)
        b, c, h, w = xp.shape
        m = self.window
        layer = self.core if (h, w) == (self.core.seq_len * m,) * 2 else self.at((h, w), self._make)
        y = layer(xp.reshape(b, h * w, c), h, w)                                     # (B, n, C)
        y = y.transpose(1, 2).reshape(b, c, h // m, 1, w // m, 1).expand(b, c, h // m, m, w // m, m)
        return y.reshape(b, c, h, w)[:, :, :x.shape[2], :x.shape[3]]


def _moa_fixed(op, theirs):
    """Patch tokens with a transpose (not a view), the key unfold at the window's stride, at least one
    reduced channel."""
    from einops.layers.torch import Rearrange
    core, m, r = theirs.core, op.window_size, op.pre_conv.out_channels
    core.queryembedding = Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)', p1=m, p2=m)
    core.keyembedding = nn.Sequential(nn.Unfold(m + 2, padding=1, stride=m), Rearrange('b d l -> b l d'))
    if core.pre_conv.out_channels != r:
        core.pre_conv = nn.Conv2d(op.dim, r, 1)
        core.query_dim, core.key_dim = r * m * m, r * (m + 2) ** 2
        core.q = nn.Linear(core.query_dim, op.dim, bias=op.q.bias is not None)
        core.kv = nn.Linear(core.key_dim, 2 * op.dim, bias=op.q.bias is not None)


def _copy_moa(op, theirs):
    core = theirs.core
    with torch.no_grad():
        for name in ('pre_conv', 'q', 'kv', 'proj'):
            getattr(core, name).load_state_dict(getattr(op, name).state_dict())
        core.relative_position_bias_table.copy_(op.relative_position_bias_table.flatten(1).T)


def _copy_axial(op, theirs):
    with torch.no_grad():
        for ours, their in zip((op.height, op.width), theirs.axial_attentions):
            attn = their.fn
            attn.to_q.weight.copy_(ours.qkv.weight[:op.dim])
            attn.to_kv.weight.copy_(ours.qkv.weight[op.dim:])
            attn.to_out.load_state_dict(ours.proj.state_dict())


class _TokensPeer(nn.Module):
    """A catalogue token module ``(queries, keys, values) -> tokens`` on our map, as self-attention."""

    def __init__(self, core: nn.Module):
        super().__init__()
        self.core = core

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        return self.core(t, t, t).transpose(1, 2).reshape(b, c, h, w)


_DAT_KERNELS = (9, 7, 5, 3)      # DAttentionBaseline's offset kernel per stage index


class _DATPeer(_PerSize):
    """DAT.py's ``DAttentionBaseline`` (its bias table is sized for one map), output only."""

    def __init__(self, op, cls):
        if op.offset_kernel not in _DAT_KERNELS:
            raise ValueError(f'DAttentionBaseline takes offset kernels {_DAT_KERNELS}, got {op.offset_kernel}')
        args = (op.num_heads, op.dim // op.num_heads, op.num_groups, 0.0, 0.0, op.stride, op.offset_range_factor,
                op.rpe_table is not None, False, False, False, _DAT_KERNELS.index(op.offset_kernel))
        size = (op.bias_size,) * 2
        super().__init__(cls(size, size, *args))
        self.cls, self.args, self.size = cls, args, size
        self.stride, self.factor, self.paper_grid = op.stride, op.offset_range_factor, False

    def _make(self, size):
        layer = self.cls(size, size, *self.args)
        for name in ('conv_offset', 'proj_q', 'proj_k', 'proj_v', 'proj_out'):
            setattr(layer, name, getattr(self.core, name))
        return layer

    def forward(self, x):
        layer = self.core if tuple(x.shape[2:]) == self.size else self.at(x.shape[2:], self._make)
        if self.paper_grid:
            layer._get_ref_points = _paper_reference_points.__get__(layer)
            hk = (x.shape[2] - 1) // self.stride + 1           # the offset map's rows (odd kernel, padding k // 2)
            layer.offset_range_factor = self.factor * hk / max(hk - 1, 1)
        return layer(x)[0]


def _paper_reference_points(self, h, w, b, dtype, device):
    """DAT's reference grid as the paper defines it: -1 and +1 at the corner pixels."""
    def axis(n):
        return torch.linspace(-1, 1, n, dtype=dtype, device=device) if n > 1 else torch.zeros(1, dtype=dtype,
                                                                                            device=device)
    ref = torch.stack(torch.meshgrid(axis(h), axis(w), indexing='ij'), dim=-1)
    return ref[None].expand(b * self.n_groups, -1, -1, -1)


def _dat_paper_grid(op, theirs):
    """The paper's reference grid for the points and the query positions; the offset bound s / H_r
    (in the catalogue's half-pixel units, s/2 cells) becomes s / (H_r - 1) (s/2 cells of this grid)."""
    theirs.paper_grid = True


def _copy_dat(op, theirs):
    core = theirs.core
    with torch.no_grad():
        for name in ('proj_q', 'proj_k', 'proj_v', 'proj_out'):
            getattr(core, name).load_state_dict(getattr(op, name).state_dict())
        core.conv_offset[0].load_state_dict(op.offset_conv.state_dict())
        core.conv_offset[1].norm.load_state_dict(op.offset_norm.state_dict())
        core.conv_offset[3].load_state_dict(op.offset_proj.state_dict())
        if op.rpe_table is not None:
            core.rpe_table.copy_(op.rpe_table)


PEERS.update({
    'WindowAttention': Peer('DAT', _DATWindowPeer, cls='LocalAttention', copy=_copy_window),
    'HaloAttention': Peer(
        'HaloAttention',
        lambda op, cls: cls(dim=op.dim, block_size=op.block_size, halo_size=op.halo_size,
                            dim_head=op.dim // op.num_heads, heads=op.num_heads),
        copy=_copy_halo, fix=_halo_mask_inverted),
    'CrossFormerAttention': Peer('Crossformer', _CrossFormerPeer, cls='Attention', copy=_copy_crossformer,
                                 fix=_crossformer_dpb_at_paper_width),
    'MOAGlobalAttention': Peer('MOATransformer', _MOAPeer, cls='GlobalAttention', copy=_copy_moa, fix=_moa_fixed),
    'AxialAttention': Peer(
        'Axial_attention',
        lambda op, cls: cls(op.dim, num_dimensions=2, heads=op.num_heads, dim_index=1,
                            sum_axial_out=not op.sequential),
        cls='AxialAttention', copy=_copy_axial),
    'RelativeAttention2d': Peer(
        'SelfAttention', lambda op, cls: _TokensPeer(_sdpa(op, cls)), cls='ScaledDotProductAttention',
        copy=lambda op, theirs: _copy_sdpa(op, theirs.core)),
    'DeformableAttention': Peer('DAT', _DATPeer, cls='DAttentionBaseline', copy=_copy_dat, fix=_dat_paper_grid),
})

# --- catalogue modules built for one input size ---
class SizedPeer(nn.Module):
    """A catalogue module whose constructor fixes the input size (``AFT_FULL``'s n, ``GlobalFilter``'s
    h x w), standing in for it at any size.

    ``make(x)`` builds the catalogue module for our input ``x``, again whenever ``key(x)`` changes
    (the first call of a size, i.e. the benchmark's warm-up); once ``source`` is set (our op, by the
    peer's ``copy``), ``load(source, module, x)``, if given, copies its weights into each build; ``call(module,
    x)`` runs the module on our input and returns our layout.
    """

    def __init__(self, make: Callable, load: Optional[Callable] = None, key: Callable = lambda x: tuple(x.shape[1:]),
                 call: Callable = lambda module, x: module(x)):
        super().__init__()
        self.make, self.load, self.key, self.call = make, load, key, call
        self.inner: Optional[nn.Module] = None
        self.size = None
        self.__dict__['source'] = None   # our op: not a submodule of the peer

    def forward(self, x: Tensor) -> Tensor:
        if self.inner is None or self.key(x) != self.size:
            inner = self.make(x).to(x.device, x.dtype).train(self.training)
            if self.source is not None and self.load is not None:
                self.load(self.source, inner, x)
            self.inner, self.size = inner, self.key(x)
        return self.call(self.inner, x)



# --- nonlocal_ and pooling ---
def _no_copy(op: nn.Module, theirs: nn.Module) -> None:
    """The catalogue module's structure differs from the paper's: no weight mapping (its defect tests
    in tests/ops/test_nonlocal.py compare behaviour instead)."""


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


def _map_sized(make: Callable[[int, int], nn.Module]) -> SizedPeer:
    """A catalogue module built for each map's H x W (no weights copied: see ``_no_copy``)."""
    return SizedPeer(lambda x: make(x.shape[-2], x.shape[-1]), key=lambda x: tuple(x.shape[-2:]))


def _danet_sized(cls: type, dim: int) -> SizedPeer:
    """The catalogue's DAModule for ``dim`` channels: it ignores its d_model, H and W arguments (512
    channels, 7 x 7 always), so its two branches are rebuilt with them, per map size."""
    module = importlib.import_module(cls.__module__)

    def make(h, w):
        theirs = cls(d_model=dim, kernel_size=3, H=h, W=w)
        theirs.position_attention_module = module.PositionAttentionModule(d_model=dim, kernel_size=3, H=h, W=w)
        theirs.channel_attention_module = module.ChannelAttentionModule(d_model=dim, kernel_size=3, H=h, W=w)
        return theirs
    return _map_sized(make)


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
    'ChannelAttention': Peer('DANet', lambda op, cls: _map_sized(lambda h, w: cls(d_model=op.dim, kernel_size=3, H=h, W=w)),
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


# --- efficient and mixer families (attn_ops/ops/efficient.py, attn_ops/ops/mixer.py) ---
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
