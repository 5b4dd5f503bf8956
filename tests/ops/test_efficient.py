"""Efficient token mixers: AFT (full, local, simple, conv), EMSA, MUSE, UFO, MobileViTv2, simplified
self-attention. Formulas written out with explicit loops and axes, the catalogue with copied
weights, and the catalogue defects shown on the catalogue modules themselves."""
import math

import pytest
import torch
import torch.nn.functional as F

from attn_ops import ATTENTION, as_layout
from attn_ops.layouts import map_to_tokens
from tests.ops.common import (Case, PeerCase, build, catalogue_diff, catalogue_test, formula_test, gradcheck_test,
                              layer_norm, lengths_mask, linear, softmax, zero_rows)


def _key_logits(logits, mask, key_axis):
    """-inf at padded keys along ``key_axis`` of ``logits`` (batch first)."""
    if mask is None:
        return logits
    shape = [mask.shape[0]] + [1] * (logits.dim() - 1)
    shape[key_axis] = mask.shape[1]
    return logits.masked_fill(~mask.view(shape), float('-inf'))


def _rows(weights, mask):
    """(B, h, N, M) weights with padded query rows zeroed."""
    return weights if mask is None else torch.where(mask[:, None, :, None], weights, torch.zeros_like(weights))


def _heads(t, h):
    b, n, c = t.shape
    return t.view(b, n, h, c // h).permute(0, 2, 1, 3)                     # (B, h, N, d)


def _merge(t):
    b, h, n, d = t.shape
    return t.permute(0, 2, 1, 3).reshape(b, n, h * d)


# ----------------------------------------------------------------------------- AFT
def _aft_bias(op, n):
    """w (n, n) = U V^T, zero outside |t - t'| < s for AFT-local, written with loops."""
    w = op.pos_u[:n] @ op.pos_v[:n].T
    window = getattr(op, 'window', None)
    if window is not None:
        band = torch.tensor([[abs(t - s) < window for s in range(n)] for t in range(n)])
        w = torch.where(band, w, torch.zeros_like(w))
    return w


def aft_weights(op, x, mask=None):
    """Per channel c: softmax over keys s of K[s, c] + w[t, s]: (B, C, T, S)."""
    q, k, v = linear(x, op.qkv).chunk(3, dim=-1)
    n = x.shape[1]
    w = _aft_bias(op, n) if hasattr(op, 'pos_u') else torch.zeros(n, n, dtype=x.dtype)
    logits = k[:, None, :, :] + w[None, :, :, None]                         # (B, T, S, C)
    a = softmax(_key_logits(logits, mask, 2), dim=2)
    return _rows(a.permute(0, 3, 1, 2), mask)


def aft_tokens(op, x, mask=None):
    q, k, v = linear(x, op.qkv).chunk(3, dim=-1)
    a = aft_weights(op, x, mask)                                            # (B, C, T, S)
    mixed = torch.einsum('bcts,bsc->btc', a, v)
    return zero_rows(torch.sigmoid(q) * mixed, mask)


def _aft_conv_kernel(op):
    w = op.pos_weight
    mean = w.mean(dim=(1, 2), keepdim=True)
    var = ((w - mean) ** 2).mean(dim=(1, 2), keepdim=True)
    return op.pos_gain[:, None, None] * (w - mean) / torch.sqrt(var + 1e-5) + op.pos_bias[:, None, None]


def aft_conv_weights(op, x):
    """Loops over query t and key t' positions: w[t, t'] = kernel at (t' - t) inside the window, else 0."""
    b, c, h, wd = x.shape
    r = op.kernel_size // 2
    kern = _aft_conv_kernel(op)
    group = c // op.num_heads
    bias = torch.zeros(c, h * wd, h * wd, dtype=x.dtype)
    for t in range(h * wd):
        for s in range(h * wd):
            dy, dx = s // wd - t // wd, s % wd - t % wd
            if abs(dy) <= r and abs(dx) <= r:
                bias[:, t, s] = kern[torch.arange(c) // group, dy + r, dx + r]     # channel -> its head
    k = torch.einsum('oc,bchw->bohw', op.qkv.weight[c:2 * c, :, 0, 0], x) + op.qkv.bias[c:2 * c].view(1, -1, 1, 1)
    return softmax(k.flatten(2)[:, :, None, :] + bias, dim=-1)                # (B, C, T, S)


def aft_conv(op, x):
    b, c, h, wd = x.shape
    qkv = torch.einsum('oc,bchw->bohw', op.qkv.weight[:, :, 0, 0], x) + op.qkv.bias.view(1, -1, 1, 1)
    q, _, v = qkv.chunk(3, dim=1)
    mixed = torch.einsum('bcts,bcs->bct', aft_conv_weights(op, x), v.flatten(2))
    return (torch.sigmoid(q.flatten(2)) * mixed).view(b, c, h, wd)


# ----------------------------------------------------------------------------- EMSA
def _emsa_keys(op, x, hw):
    """Reduced tokens: depth-wise conv (kernel s+1, stride s, padding s//2) by loops, then LN."""
    s = op.sr_ratio
    if s == 1:
        return x
    h, w = hw
    grid = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
    k, p = s + 1, s // 2
    pad = F.pad(grid, (p, p, p, p))
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = torch.zeros(grid.shape[0], grid.shape[1], ho, wo, dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            patch = pad[:, :, i * s:i * s + k, j * s:j * s + k]
            out[:, :, i, j] = (patch * op.sr.weight[:, 0]).sum(dim=(2, 3)) + op.sr.bias
    return layer_norm(out.flatten(2).transpose(1, 2), op.sr_norm)


def _emsa_qkv(op, x, hw):
    kv = linear(_emsa_keys(op, x, hw), op.kv)
    return (_heads(linear(x, op.q), op.num_heads), _heads(kv[..., :op.dim], op.num_heads),
            _heads(kv[..., op.dim:], op.num_heads))


def emsa_weights(op, x, mask=None, hw=None):
    """The map EMSA applies to V: (B, heads, N, M), transform (1x1 conv over heads before the
    softmax over the keys, instance norm over the real entries after it) when the op has one."""
    q, k, _ = _emsa_qkv(op, x, hw)
    logits = torch.einsum('bhnd,bhmd->bhnm', q, k) / math.sqrt(q.shape[-1])
    if op.apply_transform:
        logits = torch.einsum('gh,bhnm->bgnm', op.transform_conv.weight[:, :, 0, 0], logits) \
            + op.transform_conv.bias.view(1, -1, 1, 1)
    a = softmax(_key_logits(logits, mask, 3), dim=3)
    if op.apply_transform:
        valid = torch.ones_like(a, dtype=torch.bool) if mask is None else \
            (mask[:, None, :, None] & mask[:, None, None, :]).expand_as(a)
        normed = torch.zeros_like(a)
        for b in range(a.shape[0]):
            for g in range(a.shape[1]):
                vals = a[b, g][valid[b, g]]
                mean, var = vals.mean(), ((vals - vals.mean()) ** 2).mean()
                normed[b, g] = torch.where(valid[b, g], (a[b, g] - mean) / torch.sqrt(var + 1e-5), 0.0)
        a = normed
    return _rows(a, mask)


def emsa_attention(op, x, mask=None, hw=None):
    _, _, v = _emsa_qkv(op, x, hw)
    return zero_rows(linear(_merge(emsa_weights(op, x, mask, hw) @ v), op.proj), mask)


# ----------------------------------------------------------------------------- MUSE
def muse_weights(op, x, mask=None):
    q, k, _ = (_heads(t, op.num_heads) for t in linear(x, op.qkv).chunk(3, dim=-1))
    logits = torch.einsum('bhnd,bhmd->bhnm', q, k) / math.sqrt(q.shape[-1])
    return _rows(softmax(_key_logits(logits, mask, 3), dim=3), mask)


def _conv1d_loops(v, conv, size):
    """Depth-wise 1D conv over the sequence, zero padding size // 2: v (B, N, C)."""
    b, n, c = v.shape
    out = torch.zeros_like(v)
    for t in range(n):
        for j in range(size):
            s = t + j - size // 2
            if 0 <= s < n:
                out[:, t] += v[:, s] * conv.weight[:, 0, j]
    return out + conv.bias


def muse_attention(op, x, mask=None):
    _, _, v = linear(x, op.qkv).chunk(3, dim=-1)
    att = _merge(muse_weights(op, x, mask) @ _heads(v, op.num_heads))
    y = linear(att, op.proj)
    v = zero_rows(v, mask)
    select = softmax(op.alpha, dim=0)
    for a, size, branch in zip(select, op.kernel_sizes, op.convs):
        dw = _conv1d_loops(v, branch[0], size) if size > 1 else v
        y = y + a * (torch.einsum('oc,bnc->bno', branch[1].weight[:, :, 0], dw) + branch[1].bias)
    return zero_rows(y, mask)


# ----------------------------------------------------------------------------- UFO, MobileViTv2, simplified
def ufo_attention(op, x, mask=None):
    q, k, v = (_heads(t, op.num_heads) for t in linear(x, op.qkv).chunk(3, dim=-1))
    if mask is not None:
        k = k * mask[:, None, :, None]
    kv = torch.einsum('bhnd,bhne->bhde', k, v)                              # sum over tokens
    kv = op.gamma * kv / torch.sqrt((kv ** 2).sum(-1, keepdim=True))        # L2 over the value channels
    q = op.gamma * q / torch.sqrt((q ** 2).sum(-1, keepdim=True))           # L2 over the query channels
    return zero_rows(linear(_merge(q @ kv), op.proj), mask)


def mobilevitv2_scores(op, x, mask=None):
    score = linear(x, op.to_score)                                          # (B, N, 1)
    return softmax(_key_logits(score, mask, 1), dim=1)                      # over the tokens


def mobilevitv2_weights(op, x, mask=None):
    s = mobilevitv2_scores(op, x, mask)[..., 0]
    return _rows(s[:, None, None, :].expand(-1, 1, x.shape[1], -1), mask)


def mobilevitv2(op, x, mask=None):
    k, v = linear(x, op.kv).chunk(2, dim=-1)
    context = (mobilevitv2_scores(op, x, mask) * k).sum(dim=1, keepdim=True)
    return zero_rows(linear(torch.clamp(v, min=0) * context, op.out_proj), mask)


def simplified_weights(op, x, mask=None):
    h = _heads(x, op.num_heads)
    logits = torch.einsum('bhnd,bhmd->bhnm', h, h) / math.sqrt(h.shape[-1])
    return _rows(softmax(_key_logits(logits, mask, 3), dim=3), mask)


def simplified(op, x, mask=None):
    return zero_rows(linear(_merge(simplified_weights(op, x, mask) @ _heads(x, op.num_heads)), op.proj), mask)


CASES = [
    Case(dict(type='AFTFull', dim=6, max_len=12, pos_dim=4), (2, 9, 6), aft_tokens, aft_weights),
    Case(dict(type='AFTFull', dim=6, max_len=12, pos_dim=4), (2, 9, 6), aft_tokens, aft_weights, lengths=[9, 5],
         id='AFTFull-masked'),
    Case(dict(type='AFTLocal', dim=6, max_len=12, window=3, pos_dim=4), (2, 9, 6), aft_tokens, aft_weights),
    Case(dict(type='AFTLocal', dim=6, max_len=12, window=2, pos_dim=4), (2, 9, 6), aft_tokens, aft_weights,
         lengths=[9, 4], id='AFTLocal-masked'),
    Case(dict(type='AFTSimple', dim=6), (2, 9, 6), aft_tokens, aft_weights),
    Case(dict(type='AFTSimple', dim=6), (2, 9, 6), aft_tokens, aft_weights, lengths=[9, 3], id='AFTSimple-masked'),
    Case(dict(type='AFTConv', dim=8, num_heads=2, kernel_size=3), (2, 8, 3, 4), aft_conv,
         lambda op, x: aft_conv_weights(op, x)),
    Case(dict(type='AFTConv', dim=4, num_heads=4, kernel_size=5), (1, 4, 3, 6), aft_conv,
         lambda op, x: aft_conv_weights(op, x), id='AFTConv-5x5-on-3x6'),
    Case(dict(type='EMSA', dim=8, num_heads=2), (2, 7, 8), emsa_attention),
    Case(dict(type='EMSA', dim=8, num_heads=2), (2, 7, 8), emsa_attention, lengths=[7, 4], id='EMSA-masked'),
    Case(dict(type='EMSA', dim=8, num_heads=2, sr_ratio=2), (1, 20, 8), emsa_attention, call=dict(hw=(4, 5)),
         id='EMSA-sr2'),
    Case(dict(type='EMSA', dim=8, num_heads=2, sr_ratio=3), (1, 12, 8), emsa_attention, call=dict(hw=(4, 3)),
         id='EMSA-sr3'),
    Case(dict(type='EMSA', dim=8, num_heads=2, apply_transform=False), (2, 7, 8), emsa_attention, emsa_weights,
         lengths=[7, 5], id='EMSA-no-transform-masked'),
    Case(dict(type='MUSEAttention', dim=8, num_heads=2), (2, 7, 8), muse_attention, muse_weights),
    Case(dict(type='MUSEAttention', dim=8, num_heads=2, kernel_sizes=(3, 7)), (2, 7, 8), muse_attention,
         muse_weights, lengths=[7, 4], id='MUSEAttention-masked'),
    Case(dict(type='UFOAttention', dim=8, num_heads=2), (2, 7, 8), ufo_attention),
    Case(dict(type='UFOAttention', dim=8, num_heads=2), (2, 7, 8), ufo_attention, lengths=[7, 3],
         id='UFOAttention-masked'),
    Case(dict(type='MobileViTv2Attention', dim=6), (2, 7, 6), mobilevitv2, mobilevitv2_weights),
    Case(dict(type='MobileViTv2Attention', dim=6), (2, 7, 6), mobilevitv2, mobilevitv2_weights, lengths=[7, 2],
         id='MobileViTv2Attention-masked'),
    Case(dict(type='SimplifiedSelfAttention', dim=8, num_heads=2), (2, 7, 8), simplified, simplified_weights),
    Case(dict(type='SimplifiedSelfAttention', dim=8, num_heads=2), (2, 7, 8), simplified, simplified_weights,
         lengths=[7, 5], id='SimplifiedSelfAttention-masked'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test(CASES)
test_catalogue = catalogue_test([
    PeerCase(dict(type='AFTFull', dim=32, max_len=64), (3, 49, 32)),
    PeerCase(dict(type='AFTFull', dim=32, max_len=64), (3, 50, 32), id='AFTFull-50-tokens'),
    PeerCase(dict(type='AFTSimple', dim=32), (3, 50, 32)),
    # the instance norm scales each head's map to unit variance: small weights keep outputs O(1)
    PeerCase(dict(type='EMSA', dim=32, num_heads=4), (2, 30, 32), std=0.05),
    PeerCase(dict(type='EMSA', dim=16, num_heads=4), (2, 16, 16), std=0.1, id='EMSA-16'),
    PeerCase(dict(type='EMSA', dim=32, num_heads=4, apply_transform=False), (2, 30, 32), id='EMSA-no-transform'),
    PeerCase(dict(type='MUSEAttention', dim=32, num_heads=4), (2, 30, 32)),
    PeerCase(dict(type='UFOAttention', dim=32, num_heads=4), (2, 30, 32)),
    PeerCase(dict(type='MobileViTv2Attention', dim=32), (2, 30, 32)),   # the catalogue with the ReLU added
    PeerCase(dict(type='SimplifiedSelfAttention', dim=32, num_heads=8), (2, 30, 32)),
])


# ----------------------------------------------------------------------------- catalogue defects
def _catalogue(name):
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import PEERS, catalogue_class
    return catalogue_class(PEERS[name])


def test_catalogue_aft_fixes_n_and_overflows_ours_does_not():
    """Measured in issue 10: AFT_FULL(d_model=64, n=49) fails on 50 tokens, and its exp overflows
    at scale 30. Ours takes any N up to max_len (w cropped), refuses more by name, stays finite."""
    AFT_FULL = _catalogue('AFTFull')
    with pytest.raises(RuntimeError):
        AFT_FULL(d_model=64, n=49)(torch.randn(2, 50, 64))
    big = torch.randn(2, 49, 64) * 30
    theirs = AFT_FULL(d_model=64, n=49)
    with torch.no_grad():
        theirs.fc_k.weight.normal_()
        assert not torch.isfinite(theirs(big)).all()
    ours = build(dict(type='AFTFull', dim=64, max_len=64), std=1.0)
    assert ours(torch.randn(2, 49, 64)).shape == (2, 49, 64) and ours(torch.randn(2, 50, 64)).shape == (2, 50, 64)
    assert torch.isfinite(ours(big)).all()
    with pytest.raises(ValueError, match=r'AFTFull\(max_len=64\) got 65 tokens; .* build it with max_len >= 65'):
        ours(torch.randn(1, 65, 64))


def test_catalogue_aft_simple_keeps_a_plain_tensor_ours_has_no_n():
    AFT_FULL = _catalogue('AFTSimple')
    theirs = AFT_FULL(d_model=16, n=49, simple=True).double()
    assert 'position_biases' not in dict(theirs.named_buffers()) and 'position_biases' not in dict(
        theirs.named_parameters())
    assert theirs.position_biases.dtype == torch.float32           # .double() left it behind
    with pytest.raises(RuntimeError):
        theirs(torch.randn(2, 50, 16, dtype=torch.float64))
    ours = build(dict(type='AFTSimple', dim=16))
    assert not list(ours.buffers()) and ours(torch.randn(2, 50, 16)).shape == (2, 50, 16)
    assert torch.isfinite(build(dict(type='AFTSimple', dim=16), std=1.0)(torch.randn(2, 50, 16) * 30)).all()


def test_catalogue_emsa_masks_after_the_softmax_ours_before():
    """The catalogue fills masked weights with -inf after the softmax: the output is not finite.
    Ours masks the logits: a padded key gets exactly zero weight and real tokens equal the unpadded
    sample's (apply_transform=False shows the weights: rows still sum to one over the real keys)."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    op = build(dict(type='EMSA', dim=16, num_heads=2, apply_transform=False), std=0.2)
    theirs = build_peer(op)
    x = torch.randn(1, 6, 16)
    mask = lengths_mask([4], 6)
    with torch.no_grad():
        broken = theirs(x, x, x, attention_mask=~mask[:, None, None, :].expand(1, 2, 6, 6))
        assert not torch.isfinite(broken).all()
        y, w = op(x, mask=mask, return_attn=True)
        torch.testing.assert_close(y[0, :4], op(x[:, :4])[0], rtol=1e-5, atol=1e-6)
    assert torch.all(w[0, :, :4, 4:] == 0)
    torch.testing.assert_close(w[0, :, :4].sum(-1), torch.ones(2, 4))


def test_catalogue_emsa_fixes_the_grid_ours_takes_hw_per_call():
    """EMSA(H=4, W=4, ratio=2) fails on a 4 x 5 grid; ours takes the grid per call (and from the
    layout adapter on maps) and equals the catalogue once it is given the grid."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    op = build(dict(type='EMSA', dim=16, num_heads=2, sr_ratio=2), std=0.05)
    theirs = build_peer(op)
    theirs.H, theirs.W = 4, 4
    x = torch.randn(2, 20, 16)
    with torch.no_grad(), pytest.raises(RuntimeError):
        theirs(x, x, x)
    theirs.H, theirs.W = 4, 5
    with torch.no_grad():
        assert (op(x, hw=(4, 5)) - theirs(x, x, x)).abs().max() < 1e-5


def test_catalogue_muse_recreates_its_parameter_ours_trains_it():
    """MUSE's forward replaces dy_paras by nn.Parameter(softmax(dy_paras)): an optimiser built
    before never sees a gradient for it, and repeated calls drift (softmax of a softmax).
    Ours: calls agree and the selection weights alpha learn."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    op = build(dict(type='MUSEAttention', dim=16, num_heads=2), std=0.3)
    with torch.no_grad():
        op.alpha.copy_(torch.tensor([0.0, 1.0, 2.0]))
    theirs = build_peer(op)
    original = theirs.dy_paras
    opt = torch.optim.SGD(theirs.parameters(), lr=0.1)
    x = torch.randn(2, 9, 16)
    first = theirs(x, x, x)
    assert (first - op(x)).abs().max() < 1e-5                        # equal on the first call
    first.square().mean().backward()
    opt.step()
    assert theirs.dy_paras is not original and original.grad is None
    torch.testing.assert_close(original, torch.tensor([0.0, 1.0, 2.0]))   # never trained
    with torch.no_grad():
        assert (theirs(x, x, x) - first).abs().max() > 1e-3            # drifted
        torch.testing.assert_close(op(x), op(x))
    ours_opt = torch.optim.SGD(op.parameters(), lr=0.1)
    op(x).square().mean().backward()
    assert op.alpha.grad.abs().sum() > 0
    ours_opt.step()
    assert not torch.equal(op.alpha.detach(), torch.tensor([0.0, 1.0, 2.0]))


def test_catalogue_ufo_divides_zero_by_zero_ours_is_finite():
    UFOAttention = _catalogue('UFOAttention')
    theirs = UFOAttention(d_model=16, d_k=4, d_v=4, h=4)               # its own init: zero biases
    x = torch.randn(1, 5, 16)
    x[0, 2] = 0.0                                                     # one all-zero token
    with torch.no_grad():
        y = theirs(x, x, x)
    assert torch.isnan(y[0, 2]).all() and torch.isfinite(y[0, [0, 1, 3, 4]]).all()
    from tools.peers.catalogue import build_peer
    op = ATTENTION.build(dict(type='UFOAttention', dim=16, num_heads=4))
    with torch.no_grad():
        op.qkv.bias.zero_()
        assert torch.isfinite(op(x)).all()
        fixed = build_peer(op)
        assert (op(x)[0, [0, 1, 3, 4]] - fixed(x, x, x)[0, [0, 1, 3, 4]]).abs().max() < 1e-5


def test_catalogue_mobilevitv2_drops_the_relu():
    """Without the fix the catalogue computes Eq. 5 without ReLU: it equals our formula with the
    ReLU removed, not ours."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    op = build(dict(type='MobileViTv2Attention', dim=16))
    theirs = build_peer(op, fixed=False)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        k, v = linear(x, op.kv).chunk(2, dim=-1)
        no_relu = linear(v * (mobilevitv2_scores(op, x) * k).sum(1, keepdim=True), op.out_proj)
        torch.testing.assert_close(theirs(x), no_relu, rtol=1e-5, atol=1e-5)
        assert (theirs(x) - op(x)).abs().max() > 1e-2


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize('cfg', [
    dict(type='AFTSimple', dim=8), dict(type='EMSA', dim=8, num_heads=2), dict(type='UFOAttention', dim=8, num_heads=2),
    dict(type='MobileViTv2Attention', dim=8), dict(type='SimplifiedSelfAttention', dim=8, num_heads=2),
], ids=lambda c: c['type'])
def test_position_free_ops_are_permutation_equivariant(cfg):
    """Ops without positions (no w, no convolution over the sequence): permuting the tokens
    permutes the outputs (point clouds have no order)."""
    op = build(cfg, torch.float64)
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    perm = torch.randperm(10)
    torch.testing.assert_close(op(x[:, perm]), op(x)[:, perm])


def test_aft_local_with_a_wide_window_is_aft_full_and_biases_vanish_outside():
    full = build(dict(type='AFTFull', dim=6, max_len=10, pos_dim=3), torch.float64)
    local = ATTENTION.build(dict(type='AFTLocal', dim=6, max_len=10, window=10, pos_dim=3)).double()
    local.load_state_dict(full.state_dict())
    x = torch.randn(2, 8, 6, dtype=torch.float64)
    torch.testing.assert_close(local(x), full(x))
    local.window = 2
    w = local.position_bias(8)
    assert torch.all(w[0, 2:] == 0) and torch.all(w[5, :4] == 0) and torch.all(w[5, 4:7] != 0)


def test_aft_full_crops_its_bias_for_shorter_inputs():
    op = build(dict(type='AFTFull', dim=6, max_len=12, pos_dim=3), torch.float64)
    torch.testing.assert_close(op.position_bias(5), op.position_bias(12)[:5, :5])


def test_aft_conv_starts_as_aft_simple():
    """gain and bias of the kernel start at 0 (paper): w = 0, so the op is AFT-simple on the map."""
    op = ATTENTION.build(dict(type='AFTConv', dim=8, num_heads=2, kernel_size=3)).double()
    simple = ATTENTION.build(dict(type='AFTSimple', dim=8)).double()
    with torch.no_grad():
        simple.qkv.weight.copy_(op.qkv.weight[:, :, 0, 0])
        simple.qkv.bias.copy_(op.qkv.bias)
    x = torch.randn(2, 8, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(map_to_tokens(op(x)), simple(map_to_tokens(x)))


def test_aft_exponentials_stay_finite_far_beyond_scale_30():
    x = torch.randn(2, 16, 8) * 1e3
    for cfg in (dict(type='AFTFull', dim=8, max_len=16), dict(type='AFTLocal', dim=8, max_len=16, window=2),
                dict(type='AFTSimple', dim=8)):
        assert torch.isfinite(build(cfg, std=1.0)(x)).all(), cfg['type']
    assert torch.isfinite(build(dict(type='AFTConv', dim=8, num_heads=2), std=1.0)(x.view(2, 8, 4, 4))).all()


def test_emsa_reduction_needs_the_grid_and_the_adapter_hands_it_over():
    op = build(dict(type='EMSA', dim=8, num_heads=2, sr_ratio=2), torch.float64)
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    tokens = map_to_tokens(x)
    torch.testing.assert_close(map_to_tokens(as_layout(op, 'map')(x)), op(tokens, hw=(4, 5)))
    with pytest.raises(ValueError, match=r'EMSA\(sr_ratio=2\) reduces the keys on the H x W grid .* pass hw=\(H, W\)'):
        op(tokens)
    with pytest.raises(ValueError, match='the reduction runs over the token grid, which padded tokens do not have'):
        op(tokens, hw=(4, 5), mask=lengths_mask([20, 12], 20))
    assert op(torch.randn(1, 5, 8, dtype=torch.float64), hw=(5, 1)).shape == (1, 5, 8)   # an N x 1 grid


def test_emsa_return_attn_only_without_the_transform():
    """The instance norm makes the transformed map signed with rows summing to zero: not a set of
    attention weights, so it is refused; without the transform the op returns dense weights."""
    with pytest.raises(ValueError, match='forms no attention map'):
        ATTENTION.build(dict(type='EMSA', dim=8, num_heads=2))(torch.randn(1, 4, 8), return_attn=True)
    op = build(dict(type='EMSA', dim=8, num_heads=2, apply_transform=False))
    out, w = op(torch.randn(1, 4, 8), return_attn=True)
    assert op.attn_form == 'dense' and w.shape == (1, 2, 4, 4)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 2, 4))
    assert ATTENTION.build(dict(type='EMSA', dim=8, num_heads=1)).attn_form == 'dense'   # one head: no transform


def test_ufo_is_invariant_to_the_scale_of_queries():
    """XNorm: each query is L2-normalised, so scaling its projection changes nothing."""
    op = build(dict(type='UFOAttention', dim=8, num_heads=2), torch.float64)
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    y = op(x)
    with torch.no_grad():
        op.qkv.weight[:8] *= 3.0
        op.qkv.bias[:8] *= 3.0
    torch.testing.assert_close(op(x), y)


def test_mobilevitv2_context_is_shared_by_all_tokens():
    """One context vector: the weights are the same row for every token, and each token's output
    depends on its own value only through ReLU(v) (a token with v <= 0 everywhere gets the bias)."""
    op = build(dict(type='MobileViTv2Attention', dim=6), torch.float64)
    x = torch.randn(1, 5, 6, dtype=torch.float64)
    _, w = op(x, return_attn=True)
    torch.testing.assert_close(w[0, 0], w[0, 0, :1].expand(5, -1))
    with torch.no_grad():
        op.kv.bias[6:] = -1e3                                          # every value negative
    torch.testing.assert_close(op(x), op.out_proj.bias.expand(1, 5, 6))


@pytest.mark.parametrize('cfg,match', [
    (dict(type='AFTFull', dim=8, max_len=0), 'max_len and pos_dim must be >= 1'),
    (dict(type='AFTLocal', dim=8, window=0), 'window must be >= 1, got 0'),
    (dict(type='AFTConv', dim=16, kernel_size=4), 'kernel_size must be odd'),
    (dict(type='AFTConv', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='EMSA', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='EMSA', dim=8, sr_ratio=0), 'sr_ratio must be >= 1, got 0'),
    (dict(type='MUSEAttention', dim=8, num_heads=2, kernel_sizes=(1, 4)), r'kernel_sizes must be odd sizes >= 1'),
    (dict(type='MUSEAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='UFOAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='SimplifiedSelfAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)


def test_catalogue_comparison_is_sensitive():
    """The AFT peer copies our cropped w; a different w would show."""
    pytest.importorskip('fightingcv_attention')
    case = PeerCase(dict(type='AFTFull', dim=16, max_len=32), (2, 20, 16))
    assert catalogue_diff(case) < 1e-5
    from tools.peers import catalogue
    original = catalogue.PEERS['AFTFull']

    def shifted(op, theirs, x):
        catalogue._load_aft(op, theirs, x)
        with torch.no_grad():
            theirs.position_biases.add_(torch.randn_like(theirs.position_biases))
    catalogue.PEERS['AFTFull'] = type(original)(**{**original.__dict__, 'build': lambda op, cls: catalogue.SizedPeer(
        lambda x: cls(d_model=op.dim, n=x.shape[1]), shifted, key=lambda x: x.shape[1])})
    try:
        assert catalogue_diff(case) > 1e-3
    finally:
        catalogue.PEERS['AFTFull'] = original
