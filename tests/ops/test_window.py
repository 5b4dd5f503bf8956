"""Windowed attention (Swin windows, HaloNet blocks, CrossFormer groups, MOA window tokens): per-pixel
loops over the keys each paper names, the catalogue with weights copied, its defects, and the
windows' own properties (shift boundaries, padding, relative position indices)."""
import math

import pytest
import torch

from attn_ops import ATTENTION
from tests.ops.common import (Case, PeerCase, build, catalogue_test, conv1x1, formula_test, gradcheck_test, linear,
                              softmax)



def _heads(op, t):
    """(..., C) -> (..., heads, d)."""
    return t.unflatten(-1, (op.num_heads, t.shape[-1] // op.num_heads))


def _attend(op, x, groups, bias):
    """Per-pixel attention written out: query pixel p attends to the pixels ``groups(p)`` with the
    extra logits ``bias(p, keys)`` (heads, K) beside the scaled dot products. Returns the output before
    the projection (B, H, W, C) and the weights as (pixel, key pixels, (B, heads, K)) triples."""
    b, c, h, w = x.shape
    q, k, v = (_heads(op, t) for t in linear(x.permute(0, 2, 3, 1), op.qkv).split(c, dim=-1))
    d = c // op.num_heads
    out = torch.zeros(b, h, w, c, dtype=x.dtype)
    weights = []
    for i in range(h):
        for j in range(w):
            keys = groups(i, j)
            kk = torch.stack([k[:, a, bb] for a, bb in keys], dim=1)                  # (B, K, heads, d)
            vv = torch.stack([v[:, a, bb] for a, bb in keys], dim=1)
            extra = bias((i, j), keys)                                                  # (heads, K)
            logits = torch.einsum('bhd,bkhd->bhk', q[:, i, j], kk) * d ** -0.5 + extra
            attn = softmax(logits, dim=-1)
            out[:, i, j] = torch.einsum('bhk,bkhd->bhd', attn, vv).reshape(b, c)
            weights.append(((i, j), keys, attn))
    return out, weights


def to_dense(weights, hw):
    """(pixel, key pixels, (B, heads, K)) triples -> (B, heads, N, N)."""
    _, w = hw
    attn = weights[0][2]
    dense = attn.new_zeros(*attn.shape[:2], hw[0] * w, hw[0] * w)
    for (i, j), keys, attn in weights:
        for n, (a, bb) in enumerate(keys):
            dense[:, :, i * w + j, a * w + bb] = attn[:, :, n]
    return dense


# ----------------------------------------------------------------------------- Swin
def swin(op, x):
    """Swin's (shifted) windows: the map padded to a multiple of M and cyclically shifted by ``shift``
    (axes longer than M only); a pixel sees the real pixels of its window and region (Swin's slices
    (0, -M), (-M, -s), (-s, None)); bias from the table at the in-window offset."""
    _, _, h, w = x.shape
    m = op.window_size
    hp, wp = math.ceil(h / m) * m, math.ceil(w / m) * m
    sh, sw = (op.shift if h > m else 0), (op.shift if w > m else 0)

    def frame(i, j):
        return (i - sh) % hp, (j - sw) % wp

    def label(r, size, s):
        return 0 if s == 0 else (0 if r < size - m else 1 if r < size - s else 2)

    def place(i, j):
        r, c = frame(i, j)
        return r // m, c // m, label(r, hp, sh), label(c, wp, sw)

    pixels = [(i, j) for i in range(h) for j in range(w)]
    table = op.relative_position_bias_table                                         # ((2M-1)^2, heads)

    def bias(p, keys):
        ri, ci = frame(*p)
        return torch.stack([table[(ri - rk + m - 1) * (2 * m - 1) + (ci - ck + m - 1)]
                            for rk, ck in (frame(*key) for key in keys)], dim=-1)

    out, weights = _attend(op, x, lambda i, j: [p for p in pixels if place(*p) == place(i, j)], bias)
    return linear(out, op.proj).permute(0, 3, 1, 2), weights


# ----------------------------------------------------------------------------- HaloNet
def halo(op, x):
    """A pixel's block (b x b) widened by the halo h on every side, clipped to the map; row and column
    logits from the tables at the offsets (key - query) + b + h - 1, with scaled queries."""
    b_, c, h, w = x.shape
    bs, hs, d = op.block_size, op.halo_size, c // op.num_heads
    q = _heads(op, linear(x.permute(0, 2, 3, 1), op.q)) * d ** -0.5
    kv = linear(x.permute(0, 2, 3, 1), op.kv)
    k, v = _heads(op, kv[..., :c]), _heads(op, kv[..., c:])
    out = torch.zeros(b_, h, w, c, dtype=x.dtype)
    weights = []
    for i in range(h):
        for j in range(w):
            r0, c0 = (i // bs) * bs - hs, (j // bs) * bs - hs
            keys = [(a, bb) for a in range(max(r0, 0), min(r0 + bs + 2 * hs, h))
                    for bb in range(max(c0, 0), min(c0 + bs + 2 * hs, w))]
            kk = torch.stack([k[:, a, bb] for a, bb in keys], dim=1)
            vv = torch.stack([v[:, a, bb] for a, bb in keys], dim=1)
            rel = torch.stack([op.rel_height[a - i + bs + hs - 1] + op.rel_width[bb - j + bs + hs - 1]
                               for a, bb in keys])                                    # (K, d)
            logits = torch.einsum('bhd,bkhd->bhk', q[:, i, j], kk) + torch.einsum('bhd,kd->bhk', q[:, i, j], rel)
            attn = softmax(logits, dim=-1)
            out[:, i, j] = torch.einsum('bhk,bkhd->bhd', attn, vv).reshape(b_, c)
            weights.append(((i, j), keys, attn))
    return linear(out, op.proj).permute(0, 3, 1, 2), weights


# ----------------------------------------------------------------------------- CrossFormer
def _layer_norm(t, ln):
    mean = t.mean(-1, keepdim=True)
    var = ((t - mean) ** 2).mean(-1, keepdim=True)
    return (t - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def dpb(pos, offset):
    """CrossFormer's DPB written out: Linear, then three times LN -> ReLU -> Linear."""
    t = linear(offset, pos.pos_proj)
    for block in (pos.pos1, pos.pos2, pos.pos3):
        t = linear(torch.relu(_layer_norm(t, block[0])), block[2])
    return t


def crossformer(op, x):
    """SDA: G x G blocks (in-block coordinates); LDA: pixels congruent modulo I (coordinates: the
    quotient); one group of the whole map when min(H, W) <= G. Bias: DPB of the coordinate offset."""
    _, _, h, w = x.shape
    g, iv = op.group_size, op.interval
    if min(h, w) <= g:
        group, coord = (lambda i, j: 0), (lambda i, j: (i, j))
    elif op.lsda == 'sda':
        group, coord = (lambda i, j: (i // g, j // g)), (lambda i, j: (i % g, j % g))
    else:
        group, coord = (lambda i, j: (i % iv, j % iv)), (lambda i, j: (i // iv, j // iv))
    pixels = [(i, j) for i in range(h) for j in range(w)]

    def bias(p, keys):
        yq, xq = coord(*p)
        offsets = torch.tensor([[yq - yk, xq - xk] for yk, xk in (coord(*key) for key in keys)], dtype=x.dtype)
        return dpb(op.pos, offsets).T

    out, weights = _attend(op, x, lambda i, j: [p for p in pixels if group(*p) == group(i, j)], bias)
    return linear(out, op.proj).permute(0, 3, 1, 2), weights


# ----------------------------------------------------------------------------- MOA
def bilinear(table, y, x):
    """``table`` (heads, P, Q) read at the real coordinates (y, x), zero beyond it."""
    out = torch.zeros(table.shape[0], dtype=table.dtype)
    for yy in (math.floor(y), math.floor(y) + 1):
        for xx in (math.floor(x), math.floor(x) + 1):
            weight = (1 - abs(y - yy)) * (1 - abs(x - xx))
            if 0 <= yy < table.shape[1] and 0 <= xx < table.shape[2] and weight > 0:
                out = out + weight * table[:, yy, xx]
    return out


def moa(op, x):
    """Window (a, b): query = its w x w pixels of the reduced map, flattened (row, col, channel); key
    and value = the (w + 2) x (w + 2) patch around it (zeros beyond the map), flattened (channel,
    row, col); attention among windows with the bias table at the offset scaled to its grid."""
    b_, c, h, w = x.shape
    m, g, heads = op.window_size, op.grid_size, op.num_heads
    z = conv1x1(x, op.pre_conv)
    nh, nw = math.ceil(h / m), math.ceil(w / m)
    zp = torch.zeros(b_, z.shape[1], nh * m + 2, nw * m + 2, dtype=x.dtype)
    zp[:, :, 1:h + 1, 1:w + 1] = z
    wins = [(a, bb) for a in range(nh) for bb in range(nw)]
    qf = torch.stack([zp[:, :, 1 + a * m:1 + a * m + m, 1 + bb * m:1 + bb * m + m].permute(0, 2, 3, 1).flatten(1)
                      for a, bb in wins], dim=1)
    kf = torch.stack([zp[:, :, a * m:a * m + m + 2, bb * m:bb * m + m + 2].flatten(1) for a, bb in wins], dim=1)
    q = _heads(op, linear(qf, op.q))
    kv = linear(kf, op.kv)
    k, v = _heads(op, kv[..., :c]), _heads(op, kv[..., c:])
    table = op.relative_position_bias_table
    bias = torch.stack([torch.stack([bilinear(table, (a - a2) * (g - 1) / max(nh - 1, 1) + g - 1,
                                              (bb - b2) * (g - 1) / max(nw - 1, 1) + g - 1)
                                     for a2, b2 in wins], dim=-1) for a, bb in wins], dim=1)   # (heads, n, n)
    logits = torch.einsum('bnhd,bmhd->bhnm', q, k) * (c // heads) ** -0.5 + bias
    attn = softmax(logits, dim=-1)
    tokens = linear(torch.einsum('bhnm,bmhd->bnhd', attn, v).flatten(2), op.proj)     # (B, n, C)
    y = torch.stack([torch.stack([tokens[:, (i // m) * nw + j // m] for j in range(w)], dim=-1)
                     for i in range(h)], dim=-2)
    return y, attn


def _first(fn):
    return lambda op, x: fn(op, x)[0]


CASES = [
    Case(dict(type='WindowAttention', dim=8, num_heads=2, window_size=3), (2, 8, 6, 7), _first(swin), id='W-MSA'),
    Case(dict(type='WindowAttention', dim=8, num_heads=2, window_size=3, shift=1), (2, 8, 7, 8), _first(swin),
         id='SW-MSA'),
    Case(dict(type='WindowAttention', dim=8, num_heads=1, window_size=4, shift=2, qkv_bias=False), (1, 8, 3, 6),
         _first(swin), id='SW-MSA-window-taller-than-map'),
    Case(dict(type='WindowAttention', dim=8, num_heads=2, window_size=3, shift=1), (2, 8, 7, 1), _first(swin),
         id='SW-MSA-Nx1'),
    Case(dict(type='HaloAttention', dim=8, num_heads=2, block_size=2, halo_size=1), (2, 8, 5, 7), _first(halo),
         id='halo-b2-h1'),
    Case(dict(type='HaloAttention', dim=8, num_heads=4, block_size=3, halo_size=2), (1, 8, 4, 4), _first(halo),
         id='halo-b3-h2'),
    Case(dict(type='HaloAttention', dim=8, num_heads=1, block_size=4, halo_size=0), (2, 8, 6, 5), _first(halo),
         id='halo-b4-h0'),
    Case(dict(type='CrossFormerAttention', dim=8, num_heads=2, group_size=3), (2, 8, 7, 8), _first(crossformer),
         id='SDA'),
    Case(dict(type='CrossFormerAttention', dim=8, num_heads=2, group_size=2, interval=3, lsda='lda'), (2, 8, 7, 8),
         _first(crossformer), id='LDA'),
    Case(dict(type='CrossFormerAttention', dim=8, num_heads=1, group_size=4, lsda='lda'), (2, 8, 3, 5),
         _first(crossformer), id='one-group'),
    Case(dict(type='MOAGlobalAttention', dim=16, num_heads=2, window_size=3, reduction=8, grid_size=2), (2, 16, 6, 6),
         _first(moa), id='MOA-grid-as-table'),
    Case(dict(type='MOAGlobalAttention', dim=16, num_heads=2, window_size=2, reduction=8, grid_size=2), (2, 16, 7, 3),
         _first(moa), id='MOA-grid-4x2'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test([CASES[1], CASES[4], CASES[8], CASES[11]])


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_dense_weights_equal_the_formula_and_give_the_output(case):
    """``dense_attention`` of the returned window weights = the per-pixel formula's weights, and
    applied to the values it reproduces the output."""
    op, x, _ = case.make()
    formula = {'WindowAttention': swin, 'HaloAttention': halo, 'CrossFormerAttention': crossformer,
               'MOAGlobalAttention': moa}[case.cfg['type']]
    with torch.no_grad():
        y, weights = op(x, return_attn=True)
        dense = op.dense_attention(weights, x.shape[2:])
        expected_y, expected = formula(op, x)
    torch.testing.assert_close(y, expected_y)
    if case.cfg['type'] == 'MOAGlobalAttention':    # window weights; dense = shared by each window's pixels
        torch.testing.assert_close(weights, expected)
        torch.testing.assert_close(dense.sum(-1), torch.ones_like(dense.sum(-1)))
        return
    torch.testing.assert_close(dense, to_dense(expected, x.shape[2:]))
    b, c, h, w = x.shape
    values = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
    layer = op.kv if case.cfg['type'] == 'HaloAttention' else op.qkv
    v = _heads(op, linear(values, layer)[..., -c:]).transpose(1, 2)                 # (B, heads, N, d)
    mixed = (dense @ v).transpose(1, 2).reshape(b, h * w, c)
    torch.testing.assert_close(linear(mixed, op.proj).transpose(1, 2).reshape(b, c, h, w), y)


# ----------------------------------------------------------------------------- the catalogue
test_catalogue = catalogue_test([
    PeerCase(dict(type='WindowAttention', dim=32, num_heads=2, window_size=4), (2, 32, 8, 8), id='W-MSA'),
    PeerCase(dict(type='WindowAttention', dim=32, num_heads=2, window_size=4, shift=2), (2, 32, 8, 12), id='SW-MSA'),
    PeerCase(dict(type='WindowAttention', dim=32, num_heads=4, window_size=3, shift=1), (2, 32, 6, 9), id='SW-MSA-3'),
    # HaloAttention, CrossFormerAttention and MOAGlobalAttention against the catalogue with its
    # defects fixed (the tests below show each defect)
    PeerCase(dict(type='HaloAttention', dim=32, num_heads=2, block_size=4, halo_size=1), (2, 32, 8, 8), id='halo'),
    PeerCase(dict(type='HaloAttention', dim=32, num_heads=4, block_size=2, halo_size=2), (2, 32, 6, 4), id='halo-2'),
    PeerCase(dict(type='CrossFormerAttention', dim=32, num_heads=2, group_size=4), (2, 32, 8, 8), id='SDA'),
    PeerCase(dict(type='CrossFormerAttention', dim=32, num_heads=2, group_size=2, interval=4, lsda='lda'),
             (2, 32, 8, 8), id='LDA'),
    PeerCase(dict(type='MOAGlobalAttention', dim=64, num_heads=2, window_size=4, grid_size=2), (2, 64, 8, 8),
             id='MOA'),
])


def test_catalogue_halo_masks_the_image_instead_of_the_padding():
    """Its mask is True at the map's pixels and is used as the fill mask: an interior block's
    queries all see -max everywhere (uniform weights, one output for the whole block) and a border
    block sees only the zero padding (output = the projection's bias)."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer, run_peer
    op = build(dict(type='HaloAttention', dim=16, num_heads=2, block_size=2, halo_size=1))
    broken = build_peer(op, fixed=False)
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        theirs = run_peer(op, broken, x)
        ours = op(x)
    centre = theirs[0, :, 2:4, 2:4].flatten(1)                                         # the interior block
    torch.testing.assert_close(centre, centre[:, :1].expand_as(centre))
    torch.testing.assert_close(theirs[0, :, 0, 0], broken.to_out.bias)
    assert (ours[0, :, 2:4, 2:4].flatten(1) - ours[0, :, 2, 2, None]).abs().max() > 1e-2
    assert (ours[0, :, 0, 0] - op.proj.bias).abs().max() > 1e-2


def test_halo_blocks_in_chunks_equal_one_pass_with_gradients(monkeypatch):
    """Above MAP_BUDGET elements of widened keys and values the blocks go in chunks, recomputed in
    backward: same output and gradients as one pass, and less kept for backward."""
    from attn_ops.ops import window
    from tools.benchmark_ops import saved_bytes
    op = build(dict(type='HaloAttention', dim=16, num_heads=2, block_size=2, halo_size=1), torch.float64, train=True)
    x = torch.randn(2, 16, 7, 6, dtype=torch.float64, requires_grad=True)   # 4 x 3 blocks, the last row padded
    whole = op(x)
    grads = torch.autograd.grad(whole.square().sum(), [x, *op.parameters()])
    per_block = 2 * 16 * 2 * (16 + 2 * 2 * 4)                           # B S 2 (C + 2 heads win)
    monkeypatch.setattr(window, 'MAP_BUDGET', 5 * per_block)            # chunks of 5 of the 12 blocks
    chunked = op(x)
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(chunked.square().sum(), [x, *op.parameters()]), grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    kept = saved_bytes(op, (x,))
    monkeypatch.setattr(window, 'MAP_BUDGET', 2 ** 26)
    assert kept < 0.5 * saved_bytes(op, (x,))


def test_catalogue_crossformer_dpb_has_no_width_below_16_channels():
    """The catalogue's DPB hidden width is dim // 16: 0 below 16 channels, so every offset of a group gets
    the same bias; ours (width dim // 4 = 3 at 12 channels) varies with the offset."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    op = build(dict(type='CrossFormerAttention', dim=12, num_heads=2, group_size=3))
    theirs = build_peer(op, copy_weights=False, fixed=False).core
    assert theirs.pos.pos_dim == 0
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_()
        table = theirs.pos(theirs.biases)                                              # (25, heads)
        ours = op.position_bias(3, 3, torch.float32)
    torch.testing.assert_close(table, table[:1].expand_as(table))
    assert op.pos.pos_proj.out_features == 3 and ours.std(dim=(1, 2)).min() > 1e-3


def test_catalogue_moa_key_stride_is_14_whatever_the_window():
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer, run_peer
    op = build(dict(type='MOAGlobalAttention', dim=64, num_heads=2, window_size=4, grid_size=2))
    broken = build_peer(op, fixed=False)
    assert broken.core.keyembedding.stride == 14
    with pytest.raises(RuntimeError, match='shape'):
        run_peer(op, broken, torch.randn(1, 64, 8, 8))


def test_catalogue_moa_patch_tokens_mix_windows():
    """With the stride fixed (window 14), its query of window 0 is read with ``view`` from a
    (B, w w r, n_h, n_w) tensor, so it takes pixels of every window: a map that is zero except in
    window 3 changes the catalogue's query 0; ours (and the fixed catalogue) leave it at the bias."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    op = build(dict(type='MOAGlobalAttention', dim=32, num_heads=1, window_size=14, grid_size=2))
    x = torch.zeros(1, 32, 28, 28)
    x[:, :, 14:, 14:] = torch.randn(1, 32, 14, 14)                                     # window 3 only
    with torch.no_grad():
        for fixed, mixes in ((False, True), (True, False)):
            core = build_peer(op, fixed=fixed).core
            z = core.pre_conv(x) - core.pre_conv.bias.view(1, -1, 1, 1)                  # zero outside window 3
            query0 = core.q(core.queryembedding(z).reshape(1, -1, core.query_dim))[0, 0]
            assert mixes == bool((query0 - core.q.bias).abs().max() > 1e-4), fixed


# ----------------------------------------------------------------------------- window properties
def test_relative_position_index_is_swins_formula():
    """Entry (i, j) of the table index = (y_i - y_j + M - 1)(2M - 1) + (x_i - x_j + M - 1), written out."""
    op = ATTENTION.build(dict(type='WindowAttention', dim=8, window_size=3))
    m = 3
    for i in range(m * m):
        for j in range(m * m):
            (yi, xi), (yj, xj) = divmod(i, m), divmod(j, m)
            assert op.relative_position_index[i, j] == (yi - yj + m - 1) * (2 * m - 1) + (xi - xj + m - 1)
    assert op.relative_position_index.max() == (2 * m - 1) ** 2 - 1
    assert op.relative_position_bias_table.shape == ((2 * m - 1) ** 2, op.num_heads)


def test_shifted_windows_never_attend_across_the_shift_boundary():
    """A marker at the top-left pixel: the cyclic shift brings it into the last window beside the
    bottom-right pixels, which must give it exactly zero weight and not change when it changes; the
    pixels of its own region do see it."""
    op = build(dict(type='WindowAttention', dim=8, num_heads=2, window_size=4, shift=2))
    x = torch.randn(1, 8, 8, 8)
    marked = x.clone()
    marked[:, :, 0, 0] = 1e3
    with torch.no_grad():
        y, y_marked = op(x), op(marked)
        weights = op(x, return_attn=True)[1]
    dense = op.dense_attention(weights, (8, 8))[0]                                     # (heads, 64, 64)
    across = [(6, 6), (6, 7), (7, 7), (0, 6), (6, 0), (7, 1)]    # same shifted window as (0, 0), other regions
    for i, j in across:
        assert torch.all(dense[:, i * 8 + j, 0] == 0), (i, j)
        torch.testing.assert_close(y_marked[:, :, i, j], y[:, :, i, j], rtol=0, atol=0)
    assert torch.all(dense[:, 1 * 8 + 1, 0] > 0)                  # (1, 1) shares (0, 0)'s region
    assert not torch.allclose(y_marked[:, :, 1, 1], y[:, :, 1, 1])
    unshifted = build(dict(type='WindowAttention', dim=8, num_heads=2, window_size=4))
    with torch.no_grad():
        assert torch.all(unshifted.dense_attention(unshifted(x, return_attn=True)[1], (8, 8))[0, :, 7 * 8 + 7, 0] == 0)


@pytest.mark.parametrize('name,cfg', [('WindowAttention', dict(window_size=4, shift=2)),
                                      ('HaloAttention', dict(block_size=4, halo_size=2)),
                                      ('CrossFormerAttention', dict(group_size=3, interval=3, lsda='lda'))])
def test_padded_slots_get_no_weight(name, cfg):
    """5 x 6 is padded to the window / block / interval: keys beyond the map get exactly zero weight
    from the map's pixels, whose rows sum to one over the map."""
    op = build(dict(type=name, dim=8, num_heads=2, **cfg))
    with torch.no_grad():
        _, weights = op(torch.randn(2, 8, 5, 6), return_attn=True)
    if name == 'HaloAttention':
        from attn_ops.ops.window import halo_index, window_index
        queries, keys = window_index(5, 6, (4, 4)), halo_index(5, 6, 4, 2)
    else:
        queries = keys = op._windows(5, 6, 'cpu')[0] if name == 'WindowAttention' else op.groups(5, 6)[0]
    assert (keys < 0).any()
    padded = ((queries >= 0)[:, :, None] & (keys < 0)[:, None, :])[None, None].expand_as(weights)
    assert torch.all(weights[padded] == 0)
    dense = op.dense_attention(weights, (5, 6))
    torch.testing.assert_close(dense.sum(-1), torch.ones_like(dense.sum(-1)))


def test_window_larger_than_the_map_is_global_attention_with_the_bias():
    """A 7 x 7 window on a 4 x 4 map: one padded window, every pixel sees all 16."""
    op = build(dict(type='WindowAttention', dim=8, num_heads=2))
    with torch.no_grad():
        _, weights = op(torch.randn(1, 8, 4, 4), return_attn=True)
    assert weights.shape == (1, 2, 1, 49, 49)
    assert torch.all(op.dense_attention(weights, (4, 4)) > 0)


def test_moa_output_is_constant_over_each_window():
    op = build(dict(type='MOAGlobalAttention', dim=32, window_size=3))
    with torch.no_grad():
        y = op(torch.randn(2, 32, 7, 5))
    for a in range(3):
        for b in range(2):
            block = y[:, :, 3 * a:3 * a + 3, 3 * b:3 * b + 3].flatten(2)
            torch.testing.assert_close(block, block[:, :, :1].expand_as(block))


def test_default_heads_follow_the_papers_head_width():
    assert ATTENTION.build(dict(type='WindowAttention', dim=96)).num_heads == 3            # Swin-T stage 1
    assert ATTENTION.build(dict(type='CrossFormerAttention', dim=64)).num_heads == 2       # CrossFormer-T
    assert ATTENTION.build(dict(type='MOAGlobalAttention', dim=16)).num_heads == 1
    assert ATTENTION.build(dict(type='HaloAttention', dim=16)).num_heads == 8


@pytest.mark.parametrize('cfg,match', [
    (dict(type='WindowAttention', dim=8, window_size=4, shift=4),
     r'expected window_size >= 1 and 0 <= shift < window_size, got window_size=4, shift=4'),
    (dict(type='WindowAttention', dim=100), r'dim=100 is not divisible by num_heads=3 \(num_heads=None means dim // 32\)'),
    (dict(type='HaloAttention', dim=12), 'dim=12 is not divisible by num_heads=8'),
    (dict(type='HaloAttention', dim=16, halo_size=-1), 'expected block_size >= 1 and halo_size >= 0'),
    (dict(type='CrossFormerAttention', dim=16, lsda='long'), "lsda must be 'sda' or 'lda', got 'long'"),
    (dict(type='CrossFormerAttention', dim=16, interval=0), 'expected group_size >= 1 and interval >= 1'),
    (dict(type='MOAGlobalAttention', dim=16, window_size=0), 'expected window_size, reduction and grid_size >= 1'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
