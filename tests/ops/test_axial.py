"""Axial attention (Ho et al.; Axial-DeepLab's position-sensitive terms) and CoAtNet's relative
attention: per-position loops, the catalogue with weights copied, its missing relative bias, and
translation equivariance."""
import math

import pytest
import torch

from attn_ops import ATTENTION
from tests.ops.common import Case, PeerCase, build, catalogue_test, formula_test, gradcheck_test, linear, softmax
from tests.ops.test_window import bilinear


def axial_pass(layer, seq, span, positional):
    """One axis, written out: position o attends to the positions p with |p - o| <= span // 2; logits
    (q_o.k_p + q_o.r^q_{p-o} + k_p.r^k_{p-o}) / sqrt(d), values v_p + r^v_{p-o}. (B', L, C) ->
    output (B', L, C), weights (B', heads, L, L) (zero beyond the span)."""
    n, length, c = seq.shape
    heads = layer.num_heads
    d = c // heads
    q, k, v = (t.unflatten(-1, (heads, d)) for t in linear(seq, layer.qkv).split(c, dim=-1))    # (B', L, h, d)
    r = span // 2
    out = torch.zeros(n, length, heads, d, dtype=seq.dtype)
    weights = torch.zeros(n, heads, length, length, dtype=seq.dtype)
    for o in range(length):
        keys = [p for p in range(length) if abs(p - o) <= r]
        kk, vv = k[:, keys], v[:, keys]                                                 # (B', K, h, d)
        logits = torch.einsum('bhd,bkhd->bhk', q[:, o], kk)
        if positional:
            idx = [p - o + r for p in keys]
            logits = (logits + torch.einsum('bhd,kd->bhk', q[:, o], layer.rel_q[idx])
                      + torch.einsum('bkhd,kd->bhk', kk, layer.rel_k[idx]))
            vv = vv + layer.rel_v[idx][None, :, None, :]
        attn = softmax(logits * d ** -0.5, dim=-1)
        out[:, o] = torch.einsum('bhk,bkhd->bhd', attn, vv)
        weights[:, :, o, keys] = attn
    return linear(out.flatten(2), layer.proj), weights


def axial(op, x, with_weights=False):
    """Columns (each a sequence over H), then rows of the column output (``sequential``) or of the
    input (summed)."""
    b, c, h, w = x.shape
    cols, a_col = axial_pass(op.height, x.permute(0, 3, 2, 1).reshape(b * w, h, c), op.span, op.positional)
    cols = cols.reshape(b, w, h, c).permute(0, 3, 2, 1)
    rows_in = cols if op.sequential else x
    rows, a_row = axial_pass(op.width, rows_in.permute(0, 2, 3, 1).reshape(b * h, w, c), op.span, op.positional)
    rows = rows.reshape(b, h, w, c).permute(0, 3, 1, 2)
    y = rows if op.sequential else cols + rows
    if not with_weights:
        return y
    a_col = a_col.reshape(b, w, -1, h, h).permute(0, 2, 3, 1, 4)                       # [b, head, o, col, p]
    a_row = a_row.reshape(b, h, -1, w, w).permute(0, 2, 1, 3, 4)                       # [b, head, row, o, p]
    return y, torch.cat([a_col, a_row], dim=-1)


def relative_2d(op, x, with_weights=False):
    """Global attention with the bias of the offset (dy, dx) read from the table at
    (dy (S - 1) / (H - 1) + S - 1, dx (S - 1) / (W - 1) + S - 1), bilinearly."""
    b, c, h, w = x.shape
    s, heads = op.bias_size, op.num_heads
    d = c // heads
    t = x.flatten(2).transpose(1, 2)
    q, k, v = (u.unflatten(-1, (heads, d)) for u in linear(t, op.qkv).split(c, dim=-1))    # (B, N, h, d)
    pix = [(i, j) for i in range(h) for j in range(w)]
    bias = torch.stack([torch.stack([bilinear(op.relative_position_bias_table,
                                              (i - a) * (s - 1) / max(h - 1, 1) + s - 1,
                                              (j - bb) * (s - 1) / max(w - 1, 1) + s - 1)
                                     for a, bb in pix], dim=-1) for i, j in pix], dim=1)   # (h, N, N)
    attn = softmax(torch.einsum('bnhd,bmhd->bhnm', q, k) * d ** -0.5 + bias, dim=-1)
    y = linear(torch.einsum('bhnm,bmhd->bnhd', attn, v).flatten(2), op.proj).transpose(1, 2).reshape(b, c, h, w)
    return (y, attn) if with_weights else y


def _weights(fn):
    return lambda op, x: fn(op, x, with_weights=True)[1]


CASES = [
    Case(dict(type='AxialAttention', dim=8, num_heads=2, span=5), (2, 8, 4, 6), axial, _weights(axial),
         id='axial-deeplab-span5'),
    Case(dict(type='AxialAttention', dim=8, num_heads=2, qkv_bias=True), (1, 8, 3, 5), axial, _weights(axial),
         id='axial-deeplab-global'),
    Case(dict(type='AxialAttention', dim=8, num_heads=4, span=3, positional=False, sequential=False), (2, 8, 5, 4),
         axial, _weights(axial), id='ho-summed-span3'),
    Case(dict(type='AxialAttention', dim=8, num_heads=2), (2, 8, 6, 1), axial, _weights(axial), id='axial-Nx1'),
    Case(dict(type='RelativeAttention2d', dim=8, num_heads=2, bias_size=3), (2, 8, 3, 3), relative_2d,
         _weights(relative_2d), id='relative-table-size'),
    Case(dict(type='RelativeAttention2d', dim=8, num_heads=2, bias_size=3), (2, 8, 4, 5), relative_2d,
         _weights(relative_2d), id='relative-resized'),
    Case(dict(type='RelativeAttention2d', dim=8, num_heads=1, bias_size=2, qkv_bias=False), (1, 8, 5, 1),
         relative_2d, _weights(relative_2d), id='relative-Nx1'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test([CASES[0], CASES[2], CASES[5]])


# ----------------------------------------------------------------------------- the catalogue
test_catalogue = catalogue_test([
    PeerCase(dict(type='AxialAttention', dim=32, num_heads=4, positional=False), (2, 32, 5, 7), std=0.2,
             id='sequential'),
    PeerCase(dict(type='AxialAttention', dim=32, num_heads=4, positional=False, sequential=False), (2, 32, 5, 7),
             id='summed'),
    PeerCase(dict(type='AxialAttention', dim=32, num_heads=8, positional=False, sequential=False), (2, 32, 6, 1),
             id='summed-Nx1'),
])


def test_relative_attention_with_zero_bias_equals_the_catalogues_coatnet_attention():
    """The catalogue's CoAtNet stage is ScaledDotProductAttention on the flattened map: ours with the
    relative table at zero."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer, run_peer
    op = build(dict(type='RelativeAttention2d', dim=32, num_heads=4, bias_size=5))
    with torch.no_grad():
        op.relative_position_bias_table.zero_()
        x = torch.randn(2, 32, 5, 6)
        diff = (op(x) - run_peer(op, build_peer(op), x)).abs().max().item()
    assert diff < 1e-5, diff


def test_catalogue_coatnet_attention_ignores_positions_ours_does_not():
    """Permuting the pixels permutes the catalogue's output (no w_{i-j}); ours is not permutation-
    equivariant, but its bias depends on the offset only (translation-equivariant)."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer, run_peer
    op = build(dict(type='RelativeAttention2d', dim=32, num_heads=4, bias_size=4))
    theirs = build_peer(op)
    x = torch.randn(1, 32, 4, 4)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    permuted = x.flatten(2)[:, :, perm].view_as(x)
    with torch.no_grad():
        torch.testing.assert_close(run_peer(op, theirs, permuted).flatten(2), run_peer(op, theirs, x).flatten(2)[:, :, perm])
        assert (op(permuted).flatten(2) - op(x).flatten(2)[:, :, perm]).abs().max() > 1e-3
        bias = op.position_bias(4, 4).view(-1, 4, 4, 4, 4)                               # [head, yi, xi, yj, xj]
    torch.testing.assert_close(bias[:, 1:, 1:, 1:, 1:], bias[:, :-1, :-1, :-1, :-1])     # shift both by (1, 1)
    torch.testing.assert_close(bias[:, :, 2, :, 0], bias[:, :, 3, :, 1])


def test_catalogue_axial_attention_has_no_positional_terms():
    """Reversing the rows of a one-column map reverses the catalogue's output (Ho et al.'s layer relies
    on positional embeddings added outside it); Axial-DeepLab's terms (our default) break that."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer, run_peer
    plain = build(dict(type='AxialAttention', dim=16, num_heads=2, positional=False, sequential=False), std=0.2)
    x = torch.randn(1, 16, 7, 1)
    with torch.no_grad():
        theirs = build_peer(plain)
        torch.testing.assert_close(run_peer(plain, theirs, x.flip(2)), run_peer(plain, theirs, x).flip(2))
        ours = build(dict(type='AxialAttention', dim=16, num_heads=2), std=0.2)
        assert (ours(x.flip(2)) - ours(x).flip(2)).abs().max() > 1e-3


# ----------------------------------------------------------------------------- properties
def test_axial_dense_attention_composes_the_two_passes():
    """Sequential: the dense map is the row pass's times the column pass's (rows sum to one); summed:
    their sum. Both built here from the per-position formula's weights."""
    for sequential in (True, False):
        op = build(dict(type='AxialAttention', dim=8, num_heads=2, span=3, sequential=sequential), torch.float64)
        x = torch.randn(1, 8, 4, 5, dtype=torch.float64)
        with torch.no_grad():
            _, weights = op(x, return_attn=True)
            dense = op.dense_attention(weights, (4, 5))
        d_col = torch.zeros(1, 2, 20, 20, dtype=torch.float64)
        d_row = torch.zeros_like(d_col)
        for i in range(4):
            for j in range(5):
                d_col[:, :, i * 5 + j, torch.arange(4) * 5 + j] = weights[:, :, i, j, :4]
                d_row[:, :, i * 5 + j, i * 5 + torch.arange(5)] = weights[:, :, i, j, 4:]
        torch.testing.assert_close(dense, d_row @ d_col if sequential else d_row + d_col)
    torch.testing.assert_close((d_row @ d_col).sum(-1), torch.ones(1, 2, 20, dtype=torch.float64))


def test_axial_span_limits_the_keys():
    """Span 3: every position sees its neighbours only, on both axes."""
    op = build(dict(type='AxialAttention', dim=8, num_heads=2, span=3))
    with torch.no_grad():
        _, weights = op(torch.randn(1, 8, 5, 6), return_attn=True)
    col, row = weights[..., :5], weights[..., 5:]
    far_col = (torch.arange(5)[:, None] - torch.arange(5)[None, :]).abs() > 1           # [o, p]
    far_row = (torch.arange(6)[:, None] - torch.arange(6)[None, :]).abs() > 1
    assert torch.all(col.permute(0, 1, 3, 2, 4)[..., far_col] == 0)
    assert torch.all(row[..., far_row] == 0)
    assert torch.all(col.permute(0, 1, 3, 2, 4)[..., ~far_col] > 0) and torch.all(row[..., ~far_row] > 0)


def test_relative_table_is_read_as_is_at_its_own_size_and_centred_on_one_pixel_axes():
    op = build(dict(type='RelativeAttention2d', dim=8, num_heads=2, bias_size=3))
    table = op.relative_position_bias_table                                              # (2, 5, 5)
    bias = op.position_bias(3, 3).view(2, 3, 3, 3, 3)
    torch.testing.assert_close(bias[:, 2, 0, 0, 2], table[:, 4, 0])                        # offset (+2, -2)
    column = op.position_bias(4, 1).view(2, 4, 4)                                          # a 4 x 1 map: dx = 0
    assert math.isclose(column[0, 0, 0].item(), table[0, 2, 2].item(), rel_tol=1e-6)
    torch.testing.assert_close(column[:, 3, 0], table[:, 4, 2])                            # dy = +3 -> table edge


@pytest.mark.parametrize('cfg,match', [
    (dict(type='AxialAttention', dim=8, span=4), 'span must be a positive odd number, got 4'),
    (dict(type='AxialAttention', dim=12), 'dim=12 is not divisible by num_heads=8'),
    (dict(type='RelativeAttention2d', dim=16, bias_size=0), 'bias_size must be >= 1, got 0'),
    (dict(type='RelativeAttention2d', dim=16, num_heads=3), 'dim=16 is not divisible by num_heads=3'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
