"""Token mixers on maps: the MobileViT block, ViP's weighted permute-MLP, GFNet's global filter.
Formulas written out (pixel loops, index einsums, an explicit DFT), the catalogue with copied
weights, and its defects shown on its own modules."""
import math

import pytest
import torch
import torch.nn.functional as F

from attn_ops import ATTENTION
from tests.ops.common import (Case, PeerCase, batch_norm_eval, build, catalogue_test, formula_test, gradcheck_test,
                              layer_norm, linear, softmax)


# ----------------------------------------------------------------------------- MobileViT
def _conv(x, weight):
    """'Same' convolution (odd kernel, zero padding) as a sum of shifted channel matmuls."""
    k = weight.shape[-1]
    _, _, h, w = x.shape
    xp = F.pad(x, (k // 2,) * 4)
    return sum(torch.einsum('oc,bchw->bohw', weight[:, :, a, b], xp[:, :, a:a + h, b:b + w])
               for a in range(k) for b in range(k))


def _cbs(x, block):
    """conv (no bias) -> eval BatchNorm -> SiLU."""
    y = batch_norm_eval(_conv(x, block[0].weight), block[1])
    return y * torch.sigmoid(y)


def _transformer_layer(layer, z):
    b, n, d = z.shape
    heads = layer.num_heads
    q, k, v = (t.view(b, n, heads, d // heads).transpose(1, 2) for t in
               linear(layer_norm(z, layer.norm1), layer.qkv).chunk(3, dim=-1))
    a = softmax(torch.einsum('bhnd,bhmd->bhnm', q, k) / math.sqrt(d // heads), dim=-1)   # over the patches
    z = z + linear((a @ v).transpose(1, 2).reshape(b, n, d), layer.proj)
    f = linear(layer_norm(z, layer.norm2), layer.fc1)
    return z + linear(f * torch.sigmoid(f), layer.fc2)


def mobilevit(op, x):
    """Each pixel offset (ph, pw) of the p x p patches: the real pixels at that offset form one
    sequence (no padding at all), attended over, written back."""
    y = torch.einsum('oc,bchw->bohw', op.local[1].weight[:, :, 0, 0], _cbs(x, op.local[0]))
    _, _, h, w = y.shape
    p = op.patch_size
    out = torch.zeros_like(y)
    for ph in range(p):
        for pw in range(p):
            pixels = [(i, j) for i in range(ph, h, p) for j in range(pw, w, p)]
            if not pixels:
                continue
            seq = torch.stack([y[:, :, i, j] for i, j in pixels], dim=1)                 # (B, n, d)
            for layer in op.layers:
                seq = _transformer_layer(layer, seq)
            seq = layer_norm(seq, op.norm)
            for idx, (i, j) in enumerate(pixels):
                out[:, :, i, j] = seq[:, idx]
    return _cbs(torch.cat([x, _cbs(out, op.conv_proj)], dim=1), op.fusion)


# ----------------------------------------------------------------------------- ViP
def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def permute_mlp(op, x):
    """Height / width mixing inside each S x S window of the zero-padded map, by index einsums:
    W_H viewed as [row, channel-in-segment] x [row', channel-in-segment']."""
    b, c, h, w = x.shape
    s = op.segment_dim
    seg = c // s
    hp, wp = math.ceil(h / s) * s, math.ceil(w / s) * s
    t = torch.zeros(b, hp, wp, c, dtype=x.dtype)
    t[:, :h, :w] = x.permute(0, 2, 3, 1)
    t5 = t.view(b, hp, wp, s, seg)                                           # channel = segment * seg + j
    wh, ww = op.mlp_h.weight.view(s, seg, s, seg), op.mlp_w.weight.view(s, seg, s, seg)
    bh = op.mlp_h.bias.view(1, s, 1, 1, seg) if op.mlp_h.bias is not None else 0.0     # [row, j]
    bw = op.mlp_w.bias.view(1, 1, s, 1, seg) if op.mlp_w.bias is not None else 0.0     # [col, j]
    mixed_h, mixed_w = torch.zeros_like(t5), torch.zeros_like(t5)
    for r in range(0, hp, s):
        for q in range(0, wp, s):
            win = t5[:, r:r + s, q:q + s]                                    # (B, rows, cols, segments, seg)
            mixed_h[:, r:r + s, q:q + s] = torch.einsum('ikaj,bawgj->biwgk', wh, win) + bh
            mixed_w[:, r:r + s, q:q + s] = torch.einsum('ikaj,bhagj->bhigk', ww, win) + bw
    mixed_h = mixed_h.reshape(b, hp, wp, c)[:, :h, :w]
    mixed_w = mixed_w.reshape(b, hp, wp, c)[:, :h, :w]
    cm = linear(x.permute(0, 2, 3, 1), op.mlp_c)
    mean = (mixed_h + mixed_w + cm).mean(dim=(1, 2))                         # over the real pixels
    a = softmax(linear(_gelu(linear(mean, op.reweight[0])), op.reweight[2]).view(b, c, 3), dim=-1)   # over branches
    y = mixed_h * a[:, None, None, :, 0] + mixed_w * a[:, None, None, :, 1] + cm * a[:, None, None, :, 2]
    return linear(y, op.proj).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- GFNet
def global_filter(op, x):
    """The orthonormal real 2D DFT written as complex exponentials; the inverse takes the real part
    of the half spectrum with weights 1 (zero and, for even W, Nyquist columns) or 2 (the others)."""
    b, c, h, w = x.shape
    wf = w // 2 + 1
    eh = torch.exp(-2j * math.pi * torch.outer(torch.arange(h), torch.arange(h)).double() / h)   # (k, h)
    ew = torch.exp(-2j * math.pi * torch.outer(torch.arange(wf), torch.arange(w)).double() / w)  # (l, w)
    spectrum = torch.einsum('kh,bchw,lw->bckl', eh, x.to(torch.complex128), ew) / math.sqrt(h * w)
    weight = torch.tensor([1.0 if l == 0 or 2 * l == w else 2.0 for l in range(wf)], dtype=torch.float64)
    z = spectrum * op.filter(h, w) * weight
    return torch.einsum('kh,bckl,lw->bchw', eh.conj(), z, ew.conj()).real / math.sqrt(h * w)


CASES = [
    Case(dict(type='MobileViTAttention', dim=4, num_heads=2, transformer_dim=6, depth=2), (2, 4, 4, 6), mobilevit),
    Case(dict(type='MobileViTAttention', dim=4, num_heads=2, transformer_dim=4, depth=1), (1, 4, 5, 3), mobilevit,
         id='MobileViTAttention-5x3-padded'),
    Case(dict(type='MobileViTAttention', dim=4, num_heads=1, transformer_dim=4, depth=1, patch_size=3,
              kernel_size=1), (1, 4, 4, 7), mobilevit, id='MobileViTAttention-p3-k1'),
    Case(dict(type='WeightedPermuteMLP', dim=8, segment_dim=4, qkv_bias=True), (2, 8, 4, 4), permute_mlp),
    Case(dict(type='WeightedPermuteMLP', dim=8, segment_dim=2), (2, 8, 5, 3), permute_mlp,
         id='WeightedPermuteMLP-windows-5x3'),
    Case(dict(type='GlobalFilter', dim=4, h=6, w=4), (2, 4, 6, 6), global_filter, id='GlobalFilter-reference-size'),
    Case(dict(type='GlobalFilter', dim=4, h=6, w=4), (2, 4, 5, 7), global_filter, id='GlobalFilter-resized-5x7'),
    Case(dict(type='GlobalFilter', dim=4), (1, 4, 4, 1), global_filter, id='GlobalFilter-Nx1'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test(CASES)
test_catalogue = catalogue_test([
    # the catalogue block with the official layers added (see test_catalogue_mobilevit_...)
    PeerCase(dict(type='MobileViTAttention', dim=16, num_heads=2), (2, 16, 6, 8), std=0.1),
    PeerCase(dict(type='MobileViTAttention', dim=8, num_heads=4, depth=3, transformer_dim=16), (2, 8, 4, 4), std=0.1,
             id='MobileViTAttention-depth3'),
    PeerCase(dict(type='WeightedPermuteMLP', dim=32, segment_dim=8), (2, 32, 8, 8)),
    PeerCase(dict(type='WeightedPermuteMLP', dim=16, segment_dim=4, qkv_bias=True), (2, 16, 4, 4), id='vip-bias'),
    PeerCase(dict(type='GlobalFilter', dim=16), (2, 16, 14, 14)),
    PeerCase(dict(type='GlobalFilter', dim=16), (2, 16, 6, 9), id='GlobalFilter-resized'),
])


# ----------------------------------------------------------------------------- catalogue defects
def test_catalogue_mobilevit_lacks_the_official_layers_and_sizes():
    """The catalogue block: plain convolutions (no norm, no activation), no LayerNorm after the
    transformer, a transformer hard-coded at depth 3 with 8 heads of 64, and any side that is not a
    multiple of the patch size fails. Ours has the official layers and runs any size."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import PEERS, build_peer, catalogue_class
    stock = catalogue_class(PEERS['MobileViTAttention'])(in_channel=8, dim=16, kernel_size=3, patch_size=2)
    plain = (stock.conv1, stock.conv3, stock.conv4)
    assert all(isinstance(m, torch.nn.Conv2d) for m in plain)          # no norm, no activation
    assert len(stock.trans.layers) == 3 and stock.trans.layers[0][0].fn.heads == 8
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in stock.trans.children())
    with pytest.raises(Exception, match="can't divide axis of length 5"):
        stock(torch.randn(1, 8, 5, 5))
    op = build(dict(type='MobileViTAttention', dim=8, num_heads=2, transformer_dim=16), std=0.1)
    unfixed = build_peer(op, fixed=False)
    x = torch.randn(2, 8, 4, 6)
    with torch.no_grad():
        assert (unfixed(x) - op(x)).abs().max() > 1e-2
        assert op(torch.randn(1, 8, 5, 5)).shape == (1, 8, 5, 5)


def test_catalogue_vip_orders_its_branches_c_w_h():
    """Copying our weights without permuting the re-weighting rows gives a different output: the
    catalogue uses a[0] for C and a[2] for H where ViP uses a[0] for H and a[2] for C."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    op = build(dict(type='WeightedPermuteMLP', dim=16, segment_dim=4))
    theirs = build_peer(op)
    with torch.no_grad():
        theirs.reweighting.fc2.load_state_dict(op.reweight[2].state_dict())   # unpermuted
        x = torch.randn(2, 16, 4, 4)
        assert (theirs(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) - op(x)).abs().max() > 1e-3


# ----------------------------------------------------------------------------- properties
def test_mobilevit_runs_on_maps_smaller_than_a_patch():
    """1 x 1 and 1 x 3 maps: most pixel offsets of the 2 x 2 patch hold only padding (all keys
    masked); the real pixels still equal the formula over the real pixels alone."""
    op = build(dict(type='MobileViTAttention', dim=8, num_heads=2), torch.float64)
    for hw in ((1, 1), (1, 3)):
        x = torch.randn(2, 8, *hw, dtype=torch.float64)
        torch.testing.assert_close(op(x), mobilevit(op, x))


def test_mobilevit_norms_follow_norm_cfg():
    op = ATTENTION.build(dict(type='MobileViTAttention', dim=8, norm_cfg=dict(type='GN', num_groups=2)))
    norms = [m for m in op.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 3 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in op.modules())
    assert op.transformer_dim == 12 and op.ffn_dim == 24      # d = 1.5 C, FFN 2 d
    assert ATTENTION.build(dict(type='MobileViTAttention', dim=10)).transformer_dim == 16   # 15 -> multiple of 4


def test_permute_mlp_windows_never_mix():
    """With the re-weighting frozen, a pixel in the bottom S x S window never changes the top
    window's outputs (each window is permuted and mixed on its own)."""
    op = build(dict(type='WeightedPermuteMLP', dim=8, segment_dim=4), torch.float64)
    with torch.no_grad():
        op.reweight[2].weight.zero_()                       # a fixed mix of the three branches
    x = torch.randn(1, 8, 8, 4, dtype=torch.float64)
    y = op(x)
    x2 = x.clone()
    x2[:, :, 6, 1] += 5.0
    y2 = op(x2)
    torch.testing.assert_close(y2[:, :, :4], y[:, :, :4])
    assert (y2[:, :, 4:] - y[:, :, 4:]).abs().max() > 1e-3


def test_global_filter_is_a_circular_convolution():
    """Frequency-domain filtering is linear and equivariant to circular shifts, at any size."""
    op = build(dict(type='GlobalFilter', dim=4), torch.float64)
    x1, x2 = torch.randn(2, 1, 4, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(op(2 * x1 - 3 * x2), 2 * op(x1) - 3 * op(x2))
    torch.testing.assert_close(op(x1.roll((2, 3), dims=(2, 3))), op(x1).roll((2, 3), dims=(2, 3)))


def test_global_filter_resizes_its_reference_filter():
    """At the reference size the filter is the parameter itself; elsewhere its real and imaginary
    parts are resized bicubically with aligned corners (zero and highest frequencies stay put); a
    constant filter stays constant, i.e. a plain scaling of the map at every size."""
    op = build(dict(type='GlobalFilter', dim=3, h=6, w=4), torch.float64)
    reference = torch.view_as_complex(op.complex_weight).permute(2, 0, 1)
    torch.testing.assert_close(op.filter(6, 6), reference)
    torch.testing.assert_close(op.filter(6, 7), reference)                  # 7 // 2 + 1 = 4 columns too
    resized = op.filter(9, 12)
    assert resized.shape == (3, 9, 7)
    torch.testing.assert_close(resized[:, [0, -1]][:, :, [0, -1]], reference[:, [0, -1]][:, :, [0, -1]])
    parts = op.complex_weight.permute(2, 3, 0, 1).reshape(1, 6, 6, 4)
    expected = F.interpolate(parts, size=(9, 7), mode='bicubic', align_corners=True).view(3, 2, 9, 7)
    torch.testing.assert_close(torch.view_as_real(resized).permute(0, 3, 1, 2), expected)
    with torch.no_grad():
        op.complex_weight.zero_()
        op.complex_weight[..., 0] = 0.7
    x = torch.randn(2, 3, 5, 9, dtype=torch.float64)
    torch.testing.assert_close(op(x), 0.7 * x)


def test_global_filter_runs_in_float32_under_autocast_and_returns_the_input_dtype():
    op = build(dict(type='GlobalFilter', dim=4))
    x = torch.randn(1, 4, 6, 6).to(torch.bfloat16)
    y = op(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), op(x.float()), rtol=0.02, atol=0.02)


@pytest.mark.parametrize('cfg,match', [
    (dict(type='MobileViTAttention', dim=8, kernel_size=2), 'expected an odd kernel_size'),
    (dict(type='MobileViTAttention', dim=8, transformer_dim=10, num_heads=4),
     'transformer_dim=10 is not divisible by num_heads=4'),
    (dict(type='WeightedPermuteMLP', dim=12, segment_dim=8), 'dim=12 must be divisible by segment_dim=8'),
    (dict(type='GlobalFilter', dim=8, h=0), 'the reference filter size must be >= 1, got h=0, w=8'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
