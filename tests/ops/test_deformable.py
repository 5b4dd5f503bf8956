"""Deformable attention (DAT): the offset network, bilinear sampling and the deformable relative
position bias written out in pixel units, the catalogue with weights copied, its half-pixel reference
grid, and the properties of the paper's grid (zero offsets sample the pixels, bounded offsets)."""
import math

import pytest
import torch
import torch.nn.functional as F

from attn_ops import ATTENTION
from tests.ops.common import (Case, PeerCase, batch_norm_eval, build, catalogue_test, conv1x1, formula_test,
                              gradcheck_test, softmax)


def splat(y, x, h, w, dtype):
    """The pixels' weights (H W,) in the bilinear sample at (y, x)."""
    out = torch.zeros(h * w, dtype=dtype)
    for yy in (math.floor(y), math.floor(y) + 1):
        for xx in (math.floor(x), math.floor(x) + 1):
            weight = (1 - abs(y - yy)) * (1 - abs(x - xx))
            if 0 <= yy < h and 0 <= xx < w and weight > 0:
                out[yy * w + xx] += weight
    return out


def offsets(op, q):
    """The offset network on the queries of each group: (B g, 2, H/r, W/r), (y, x) channels."""
    b, c, h, w = q.shape
    g = op.num_groups
    o = F.conv2d(q.reshape(b * g, c // g, h, w), op.offset_conv.weight, op.offset_conv.bias, op.stride,
                 op.offset_kernel // 2, groups=c // g)
    norm = op.offset_norm
    if isinstance(norm, torch.nn.LayerNorm):      # over the channels of each position
        mean = o.mean(1, keepdim=True)
        var = ((o - mean) ** 2).mean(1, keepdim=True)
        o = (o - mean) / torch.sqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    else:
        o = batch_norm_eval(o, norm)
    return conv1x1(F.gelu(o), op.offset_proj)


def bilinear(img, y, x):
    """``img`` (C, P, Q) read at the real coordinates ``y``, ``x`` (any equal shapes): the four corners
    weighted (1 - |y - yy|)(1 - |x - xx|), zero beyond the grid; (C, *y.shape)."""
    p, q = img.shape[1:]
    y0, x0 = y.detach().floor(), x.detach().floor()
    out = 0
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            weight = (1 - (y - yy).abs()) * (1 - (x - xx).abs())
            inside = (yy >= 0) & (yy <= p - 1) & (xx >= 0) & (xx <= q - 1)
            out = out + img[:, yy.clamp(0, p - 1).long(), xx.clamp(0, q - 1).long()] * (weight * inside)
    return out


def dat(op, x, with_weights=False):
    """Sample (a, b) of group g sits at the reference pixel (a (H-1)/(H_r-1), b (W-1)/(W_r-1)) (the
    centre for a one-row grid) moved by s tanh(o) (H-1) / (2 (H_r - 1)) pixels; keys and values are
    projected from the bilinear samples of x; the bias is the table read at (dq - ds)/2 + 1 times
    (S - 1), dq and ds the query's and the sample's positions normalised to [-1, 1] over the map;
    softmax over the samples."""
    b, c, h, w = x.shape
    g, heads, s_ = op.num_groups, op.num_heads, op.offset_range_factor
    d, cg, hg = c // heads, c // g, heads // g
    q = conv1x1(x, op.proj_q)
    o = torch.tanh(offsets(op, q))
    o = o.view(b, g, 2, *o.shape[2:])
    hk, wk = o.shape[3:]
    ref_y = torch.arange(hk, dtype=x.dtype) * (h - 1) / (hk - 1) if hk > 1 else torch.full((1,), (h - 1) / 2)
    ref_x = torch.arange(wk, dtype=x.dtype) * (w - 1) / (wk - 1) if wk > 1 else torch.full((1,), (w - 1) / 2)
    py = (ref_y[:, None] + s_ * o[:, :, 0] * (h - 1) / (2 * max(hk - 1, 1))).flatten(2)     # (B, g, S) pixels
    px = (ref_x[None, :] + s_ * o[:, :, 1] * (w - 1) / (2 * max(wk - 1, 1))).flatten(2)
    xs = x.view(b, g, cg, h, w)
    sampled = torch.stack([torch.stack([bilinear(xs[i, j], py[i, j], px[i, j]) for j in range(g)])
                           for i in range(b)]).reshape(b, c, hk * wk)                   # (B, C, S)
    k = conv1x1(sampled, op.proj_k).reshape(b, heads, d, -1)
    v = conv1x1(sampled, op.proj_v).reshape(b, heads, d, -1)
    logits = torch.einsum('bhdn,bhds->bhns', q.reshape(b, heads, d, h * w), k) * d ** -0.5
    if op.rpe_table is not None:
        norm_y = (2 * torch.arange(h, dtype=x.dtype) / (h - 1) - 1) if h > 1 else torch.zeros(1, dtype=x.dtype)
        norm_x = (2 * torch.arange(w, dtype=x.dtype) / (w - 1) - 1) if w > 1 else torch.zeros(1, dtype=x.dtype)
        dq_y, dq_x = (t.flatten() for t in torch.meshgrid(norm_y, norm_x, indexing='ij'))   # (N,)
        ds_y = 2 * py / (h - 1) - 1 if h > 1 else py * 0
        ds_x = 2 * px / (w - 1) - 1 if w > 1 else px * 0
        size = op.bias_size
        table = op.rpe_table.view(g, hg, *op.rpe_table.shape[1:])
        bias = torch.stack([torch.cat([
            bilinear(table[j], ((dq_y[:, None] - ds_y[i, j][None]) / 2 + 1) * (size - 1),
                     ((dq_x[:, None] - ds_x[i, j][None]) / 2 + 1) * (size - 1)) for j in range(g)])
            for i in range(b)])                                                          # (B, heads, N, S)
        logits = logits + bias
    attn = softmax(logits, dim=-1)
    y = conv1x1(torch.einsum('bhns,bhds->bhdn', attn, v).reshape(b, c, h, w), op.proj_out)
    if not with_weights:
        return y
    dense = torch.zeros(b, heads, h * w, h * w, dtype=x.dtype)     # every group's splat, averaged
    for n in range(hk * wk):
        for i in range(b):
            for j in range(g):
                dense[i] += attn[i, :, :, n, None] * splat(py[i, j, n].item(), px[i, j, n].item(), h, w, x.dtype) / g
    return y, dense


def _weights(op, x):
    return dat(op, x, with_weights=True)[1]


CASES = [
    Case(dict(type='DeformableAttention', dim=8, num_heads=2, num_groups=2, bias_size=3), (1, 8, 4, 5), dat,
         _weights, id='groups2-pe'),
    Case(dict(type='DeformableAttention', dim=8, num_heads=2, num_groups=1, stride=2, offset_kernel=3,
              offset_range_factor=3.0, bias_size=4), (1, 8, 5, 6), dat, _weights, id='stride2'),
    Case(dict(type='DeformableAttention', dim=8, num_heads=2, use_pe=False, norm_cfg=dict(type='BN')), (2, 8, 4, 4),
         dat, _weights, id='no-pe-BN'),
    Case(dict(type='DeformableAttention', dim=8, num_heads=1, bias_size=3, offset_kernel=3), (2, 8, 5, 1), dat,
         _weights, id='Nx1'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test([CASES[1]])


# ----------------------------------------------------------------------------- the catalogue
test_catalogue = catalogue_test([   # with the paper's reference grid given to the catalogue (see below)
    PeerCase(dict(type='DeformableAttention', dim=32, num_heads=4, num_groups=2, bias_size=6), (2, 32, 6, 6),
             id='groups2'),
    PeerCase(dict(type='DeformableAttention', dim=32, num_heads=4, num_groups=2, bias_size=7, stride=2,
                  offset_kernel=3), (2, 32, 7, 7), id='stride2'),
    PeerCase(dict(type='DeformableAttention', dim=32, num_heads=2, num_groups=1, bias_size=6, use_pe=False,
                  offset_kernel=9), (2, 32, 6, 6), id='no-pe'),
])


def _global_attention(op, x):
    """What DAT is with zero offsets at stride 1 and no bias: attention of every pixel to every pixel."""
    b, c, h, w = x.shape
    heads, d = op.num_heads, c // op.num_heads
    q, k, v = (conv1x1(x, layer).reshape(b, heads, d, h * w) for layer in (op.proj_q, op.proj_k, op.proj_v))
    attn = softmax(torch.einsum('bhdn,bhdm->bhnm', q, k) * d ** -0.5, dim=-1)
    return conv1x1(torch.einsum('bhnm,bhdm->bhdn', attn, v).reshape(b, c, h, w), op.proj_out)


def test_zero_offsets_sample_the_pixels_the_catalogues_half_pixel_grid_does_not():
    """The paper's grid puts -1 and +1 on the corner pixels: with zero offsets at stride 1 the keys
    are the pixels. The catalogue's grid ((j + 0.5) / W * 2 - 1, sampled with align_corners=True)
    squeezes them towards the centre: its output is not that attention."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer, run_peer
    op = build(dict(type='DeformableAttention', dim=16, num_heads=2, use_pe=False, bias_size=5))
    with torch.no_grad():
        op.offset_proj.weight.zero_()
        x = torch.randn(2, 16, 5, 5)
        expected = _global_attention(op, x)
        torch.testing.assert_close(op(x), expected, rtol=1e-5, atol=1e-5)
        theirs = run_peer(op, build_peer(op, fixed=False), x)
        assert (theirs - expected).abs().max() > 1e-2
        torch.testing.assert_close(run_peer(op, build_peer(op), x), expected, rtol=1e-5, atol=1e-5)


def test_catalogue_bias_table_is_fixed_to_its_construction_size():
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import PEERS, catalogue_class
    cls = catalogue_class(PEERS['DeformableAttention'])
    theirs = cls((6, 6), (6, 6), 2, 8, 1, 0.0, 0.0, 1, 2.0, True, False, False, False, 2)
    assert theirs(torch.randn(1, 16, 6, 6))[0].shape == (1, 16, 6, 6)
    with pytest.raises(RuntimeError):
        theirs(torch.randn(1, 16, 8, 8))
    ours = build(dict(type='DeformableAttention', dim=16, num_heads=2, bias_size=6))
    assert ours(torch.randn(1, 16, 8, 8)).shape == (1, 16, 8, 8)


@pytest.mark.parametrize('option,error', [('no_off', "no attribute 'fill'"), ('fixed_pe', "no attribute 'n_sample'")])
def test_catalogue_options_that_cannot_run(option, error):
    """Two DAttentionBaseline options crash in forward (``offset.fill`` does not exist; ``self.n_sample``
    is never set); ours offers neither (zero offsets are a zero ``offset_proj``, the bias is the table)."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import PEERS, catalogue_class
    cls = catalogue_class(PEERS['DeformableAttention'])
    flags = {'no_off': False, 'fixed_pe': False, option: True}
    theirs = cls((6, 6), (6, 6), 2, 8, 1, 0.0, 0.0, 1, 2.0, True, False, flags['no_off'], flags['fixed_pe'], 2)
    with pytest.raises(AttributeError, match=error):
        theirs(torch.randn(1, 16, 6, 6))


# ----------------------------------------------------------------------------- properties
def test_offsets_are_bounded_by_half_the_factor_in_reference_cells():
    """|offset| <= s / 2 cells of the reference grid, reached when the offset network saturates."""
    op = build(dict(type='DeformableAttention', dim=8, num_heads=2, offset_range_factor=3.0, stride=2,
                    offset_kernel=3))
    with torch.no_grad():
        op.offset_proj.weight.mul_(1e4)
        x = torch.randn(2, 8, 9, 7)
        pos = op.sample_positions(op.proj_q(x))                                          # (B, 5, 4, 2)
    hk, wk = pos.shape[1:3]
    ref_y, ref_x = torch.meshgrid(torch.linspace(-1, 1, hk), torch.linspace(-1, 1, wk), indexing='ij')
    cells = torch.stack([(pos[..., 0] - ref_y) * (hk - 1) / 2, (pos[..., 1] - ref_x) * (wk - 1) / 2], dim=-1)
    assert cells.abs().max() <= 1.5 + 1e-5 and cells.abs().max() > 1.49


def test_dense_attention_reproduces_the_output():
    """With one offset group the returned (B, heads, N, N) splat, applied to the projected pixels,
    gives the output: y = proj_out(W_v (A S x) + b_v) with A S the splat (rows of A sum to one)."""
    op = build(dict(type='DeformableAttention', dim=8, num_heads=2, num_groups=1, bias_size=4), torch.float64)
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        y, dense = op(x, return_attn=True)
    assert op.dense_attention(dense, (4, 5)) is dense
    b, c, h, w = x.shape
    v = conv1x1(x, op.proj_v).reshape(b, 2, 4, h * w) - op.proj_v.bias.view(1, 2, 4, 1)      # W_v x
    mixed = torch.einsum('bhnm,bhdm->bhdn', dense, v) + op.proj_v.bias.view(1, 2, 4, 1)
    torch.testing.assert_close(conv1x1(mixed.reshape(b, c, h, w), op.proj_out), y)


@pytest.mark.parametrize('hw', [(9, 1), (1, 9), (4, 4)], ids=['Nx1', '1xN', '4x4'])
def test_runs_on_columns_rows_and_small_maps(hw):
    op = build(dict(type='DeformableAttention', dim=32))
    x = torch.randn(2, 32, *hw, requires_grad=True)
    y = op(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_defaults_follow_dat_tiny_stage_3():
    op = ATTENTION.build(dict(type='DeformableAttention', dim=384))
    assert (op.num_heads, op.num_groups, op.stride, op.offset_range_factor, op.offset_kernel) == (12, 3, 1, 2.0, 5)
    assert op.rpe_table.shape == (12, 27, 27) and isinstance(op.offset_norm, torch.nn.LayerNorm)


@pytest.mark.parametrize('cfg,match', [
    (dict(type='DeformableAttention', dim=64, num_heads=2, num_groups=3), 'num_heads=2 is not divisible by num_groups=3'),
    (dict(type='DeformableAttention', dim=16, offset_kernel=4), 'expected stride >= 1 and an odd offset_kernel'),
    (dict(type='DeformableAttention', dim=16, offset_range_factor=0), 'expected offset_range_factor > 0'),
    (dict(type='DeformableAttention', dim=20, num_heads=3), 'dim=20 is not divisible by num_heads=3'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
