"""The non-local family (DANet PAM / CAM / dual, A^2-Nets, CoT, ACmix): formulas written out from
the papers and official code, the catalogue where it is right, its defects where it is not."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attn_ops import ATTENTION
from attn_ops.layouts import tokens_to_map
from tests.ops.common import (Case, PeerCase, batch_norm_eval, build, catalogue_test, conv1x1, formula_test,
                              gradcheck_test, softmax)


# ----------------------------------------------------------------------------- formulas
def _flat(t):
    return t.reshape(*t.shape[:2], -1)                                  # (B, C, H, W) -> (B, C, N)


def position_weights(op, x):
    """DANet PAM: A[i, j] = exp(q_i . k_j) / sum_j' exp(q_i . k_j'), no scaling. (B, 1, N, N)"""
    q, k = _flat(conv1x1(x, op.query_conv)), _flat(conv1x1(x, op.key_conv))
    return softmax(torch.einsum('bci,bcj->bij', q, k), dim=2).unsqueeze(1)


def position_attention(op, x):
    v = _flat(conv1x1(x, op.value_conv))
    out = torch.einsum('bij,bcj->bci', position_weights(op, x)[:, 0], v)
    return op.gamma.scale * out.reshape(x.shape) + x


def channel_weights(x):
    """DANet CAM (official): E = X X^T over positions, A = softmax_j(max_j' E_ij' - E_ij). (B, C, C)"""
    f = _flat(x)
    energy = torch.einsum('bin,bjn->bij', f, f)
    return softmax(energy.max(dim=2, keepdim=True).values - energy, dim=2)


def channel_attention(op, x):
    out = torch.einsum('bij,bjn->bin', channel_weights(x), _flat(x))
    return op.gamma.scale * out.reshape(x.shape) + x


def conv_bn_relu(block, x):
    conv, bn = block[0], block[1]
    y = F.conv2d(x, conv.weight, None, padding=conv.padding, groups=conv.groups)
    return torch.clamp(batch_norm_eval(y, bn), min=0)


def dual_attention(op, x):
    pos = position_attention(op.pam, conv_bn_relu(op.pam_in_conv, x))
    chan = channel_attention(op.cam, conv_bn_relu(op.cam_in_conv, x))
    return conv_bn_relu(op.pam_out_conv, pos) + conv_bn_relu(op.cam_out_conv, chan)


def dual_weights(op, x):
    return position_weights(op.pam, conv_bn_relu(op.pam_in_conv, x))


def double_weights(op, x):
    """A^2: gather maps softmax over the N positions, distribution weights softmax over n. (B, 2, n, N)"""
    gather = softmax(_flat(conv1x1(x, op.convB)), dim=2)
    distribute = softmax(_flat(conv1x1(x, op.convV)), dim=1)
    return torch.stack([gather, distribute], dim=1)


def double_attention(op, x):
    a = _flat(conv1x1(x, op.convA))                                          # (B, m, N)
    w = double_weights(op, x)
    descriptors = torch.einsum('bmj,bnj->bmn', a, w[:, 0])                   # g_n = sum_j A_j gather_nj
    z = torch.einsum('bmn,bnp->bmp', descriptors, w[:, 1]).reshape(x.shape[0], -1, *x.shape[2:])
    return conv1x1(z, op.conv_reconstruct) if op.reconstruct else z


def group_norm(x, gn):
    """GroupNorm written out: per sample and group, over the group's channels and positions."""
    b, c = x.shape[:2]
    g = x.reshape(b, gn.num_groups, -1)
    mean, var = g.mean(dim=2, keepdim=True), g.var(dim=2, unbiased=False, keepdim=True)
    y = ((g - mean) / torch.sqrt(var + gn.eps)).reshape(x.shape)
    return y * gn.weight.view(1, c, 1, 1) + gn.bias.view(1, c, 1, 1)


def cot_kernels(op, x):
    """CoT's dynamic kernels (B, C/8, k^2, H, W): GroupNorm(theta([x, K1]))."""
    key = conv_bn_relu(op.key_embed, x)
    h = torch.clamp(batch_norm_eval(conv1x1(torch.cat([x, key], dim=1), op.embed[0]), op.embed[1]), min=0)
    w = group_norm(conv1x1(h, op.embed[3]), op.embed[4])
    return w.reshape(x.shape[0], x.shape[1] // 8, op.kernel_size ** 2, *x.shape[2:])


def cot_attention(op, x):
    """The official CotLayer: channel c aggregates its k x k window (zero padded) with the kernel of
    group c mod C/8; BN + SiLU; radix-2 softmax fusion of the dynamic and static contexts."""
    b, c, hgt, wid = x.shape
    k, groups = op.kernel_size, c // 8
    key = conv_bn_relu(op.key_embed, x)
    kernels = cot_kernels(op, x)
    values = batch_norm_eval(conv1x1(x, op.conv1x1[0]), op.conv1x1[1])
    padded = F.pad(values, (k // 2,) * 4)
    dynamic = torch.zeros_like(values)
    for ch in range(c):
        for o in range(k * k):
            di, dj = o // k, o % k
            dynamic[:, ch] += kernels[:, ch % groups, o] * padded[:, ch, di:di + hgt, dj:dj + wid]
    dynamic = batch_norm_eval(dynamic, op.bn)
    dynamic = dynamic * torch.sigmoid(dynamic)
    pooled = (dynamic + key).mean(dim=(2, 3), keepdim=True)
    se = torch.clamp(batch_norm_eval(conv1x1(pooled, op.se[0]), op.se[1]), min=0)
    fuse = softmax(conv1x1(se, op.se[3]).reshape(b, c, 2), dim=2)
    return dynamic * fuse[:, :, 0, None, None] + key * fuse[:, :, 1, None, None]


def _reflect(n, pad):
    return torch.from_numpy(np.pad(np.arange(n), pad, mode='reflect'))      # numpy folds back as often as needed


def _acmix_windows(op, hgt, wid):
    """Source pixel (row, col) of every window offset o and pixel p: two (K^2, H*W) index tensors."""
    k, pad = op.kernel_att, op.kernel_att // 2
    rows, cols = _reflect(hgt, pad), _reflect(wid, pad)
    src_r = torch.stack([rows[torch.arange(hgt).repeat_interleave(wid) + o // k] for o in range(k * k)])
    src_c = torch.stack([cols[torch.arange(wid).repeat(hgt) + o % k] for o in range(k * k)])
    return src_r, src_c


def acmix_weights(op, x):
    """A[p, o] = softmax_o(q_p . (k_src + pe_p - pe_src) / sqrt(d)). (B, heads, K^2, H, W)"""
    b, c, hgt, wid = x.shape
    heads, d = op.num_heads, c // op.num_heads
    q = conv1x1(x, op.conv1).reshape(b, heads, d, hgt * wid) * d ** -0.5
    k = conv1x1(x, op.conv2).reshape(b, heads, d, hgt * wid)
    gx = torch.tensor([[2 * j / max(wid - 1, 1) - 1 for j in range(wid)] for _ in range(hgt)], dtype=x.dtype)
    gy = torch.tensor([[2 * i / max(hgt - 1, 1) - 1 for _ in range(wid)] for i in range(hgt)], dtype=x.dtype)
    if wid == 1:
        gx = -torch.ones_like(gx)          # torch.linspace(-1, 1, 1) is [-1]
    if hgt == 1:
        gy = -torch.ones_like(gy)
    pe = conv1x1(torch.stack([gx, gy])[None], op.conv_p).reshape(d, hgt * wid)
    src_r, src_c = _acmix_windows(op, hgt, wid)
    src = src_r * wid + src_c                                                   # (K^2, N)
    rel = k[..., src] + pe[None, None, :, None, :] - pe[:, src][None, None]       # (B, h, d, K^2, N)
    logits = torch.einsum('bhdp,bhdop->bhop', q, rel)
    return softmax(logits, dim=2).reshape(b, heads, -1, hgt, wid)


def acmix(op, x):
    b, c, hgt, wid = x.shape
    heads, d, kc = op.num_heads, c // op.num_heads, op.kernel_conv
    src_r, src_c = _acmix_windows(op, hgt, wid)
    src = src_r * wid + src_c
    v = conv1x1(x, op.conv3).reshape(b, heads, d, hgt * wid)
    a = acmix_weights(op, x).reshape(b, heads, -1, hgt * wid)
    out_att = torch.einsum('bhop,bhdop->bhdp', a, v[..., src]).reshape(x.shape)
    qkv = torch.cat([conv1x1(x, conv).reshape(b, heads, d, hgt * wid) for conv in (op.conv1, op.conv2, op.conv3)], 1)
    shifted = torch.einsum('jt,btdp->bdjp', op.fc.weight[:, :, 0, 0], qkv).reshape(b, d * kc * kc, hgt, wid)
    out_conv = F.conv2d(shifted, op.dep_conv.weight, padding=kc // 2, groups=d)
    return op.rate1 * out_att + op.rate2 * out_conv


# ----------------------------------------------------------------------------- formula cases
CASES = [
    Case(dict(type='PositionAttention', dim=16), (2, 16, 4, 5), position_attention, position_weights),
    Case(dict(type='PositionAttention', dim=12, reduction=4), (1, 12, 3, 1), position_attention, position_weights),
    Case(dict(type='ChannelAttention', dim=8), (2, 8, 4, 3), channel_attention),
    Case(dict(type='DualAttention', dim=8, reduction=4), (2, 8, 4, 4), dual_attention, dual_weights),
    Case(dict(type='DoubleAttention', dim=12), (2, 12, 4, 5), double_attention, double_weights),
    Case(dict(type='DoubleAttention', dim=8, c_m=8, c_n=3, reconstruct=False), (2, 8, 3, 3), double_attention,
         double_weights),
    Case(dict(type='CoTAttention', dim=16), (2, 16, 4, 5), cot_attention, cot_kernels),
    Case(dict(type='CoTAttention', dim=16, kernel_size=5), (1, 16, 3, 6), cot_attention, cot_kernels),
    Case(dict(type='ACmix', dim=8, num_heads=2), (2, 8, 5, 6), acmix, acmix_weights),
    Case(dict(type='ACmix', dim=8, kernel_att=5, num_heads=4, kernel_conv=5), (1, 8, 3, 2), acmix, acmix_weights,
         id='ACmix-small-map'),
    Case(dict(type='ACmix', dim=4, kernel_att=3, num_heads=1), (1, 4, 6, 1), acmix, acmix_weights, id='ACmix-Nx1'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test([
    Case(dict(type='PositionAttention', dim=8), (1, 8, 3, 3), position_attention),
    Case(dict(type='ChannelAttention', dim=4), (1, 4, 3, 2), channel_attention),
    Case(dict(type='DualAttention', dim=8), (1, 8, 3, 3), dual_attention),
    Case(dict(type='DoubleAttention', dim=8), (2, 8, 3, 3), double_attention),
    Case(dict(type='CoTAttention', dim=8), (1, 8, 3, 3), cot_attention),
    Case(dict(type='ACmix', dim=4, kernel_att=3, num_heads=2), (1, 4, 3, 3), acmix),
])
test_catalogue = catalogue_test([
    PeerCase(dict(type='DoubleAttention', dim=32), (4, 32, 6, 7)),
    PeerCase(dict(type='DoubleAttention', dim=32, c_m=16, c_n=8), (3, 32, 5, 5)),
    PeerCase(dict(type='DoubleAttention', dim=16, c_m=16, c_n=4, reconstruct=False), (2, 16, 4, 6)),
    PeerCase(dict(type='ACmix', dim=32), (2, 32, 7, 7)),
    PeerCase(dict(type='ACmix', dim=32, num_heads=8), (2, 32, 8, 5)),
    PeerCase(dict(type='ACmix', dim=16, kernel_att=3, num_heads=2), (2, 16, 4, 9)),
])


# ----------------------------------------------------------------------------- catalogue defects
def _catalogue(module, cls):
    pytest.importorskip('fightingcv_attention')
    import importlib
    return getattr(importlib.import_module(f'fightingcv_attention.attention.{module}'), cls)


def test_catalogue_double_attention_softmax_mixes_the_batch():
    """Both softmaxes lack ``dim``: torch takes dim 0 of the (B, n, N) tensors, the batch, so a sample's
    output depends on its batch-mates. Ours (softmax over positions, then over n) does not."""
    cls = _catalogue('A2Atttention', 'DoubleAttention')
    torch.manual_seed(0)
    theirs = cls(64, 32, 32).eval()
    ours = build(dict(type='DoubleAttention', dim=64, c_m=32, c_n=32), std=None).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 64, 7, 7)
    with torch.no_grad(), pytest.warns(UserWarning, match='Implicit dimension choice for softmax'):
        assert (theirs(x[:1]) - theirs(x)[:1]).abs().max() > 10
    with torch.no_grad():
        torch.testing.assert_close(ours(x[:1]), ours(x)[:1], rtol=1e-5, atol=1e-4)
        # the catalogue with the paper's two axes given is ours (see the PeerCases above)
        torch.testing.assert_close(ours(x), double_attention(ours, x), rtol=1e-4, atol=1e-4)


def test_catalogue_dual_attention_ignores_its_size_arguments():
    cls = _catalogue('DANet', 'DAModule')
    theirs = cls(d_model=64, H=14, W=14)
    x = torch.randn(2, 64, 14, 14)
    with pytest.raises(RuntimeError):
        theirs(x)                                   # it built 512-channel, 7 x 7 branches
    assert not any('gamma' in n for n, _ in theirs.named_parameters())   # no learnable residual scales
    ours = build(dict(type='DualAttention', dim=64), std=None).eval()
    assert ours(x).shape == x.shape
    assert float(ours.pam.gamma.scale) == 0 and float(ours.cam.gamma.scale) == 0


def test_catalogue_position_attention_is_pam_without_residual_and_rescaled():
    """The catalogue's module returns tokens and no residual; with our weights inside it (its 3x3 conv
    and output projection set to the identity, its 1/sqrt(C) undone) it is exactly our attention term."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    ours = build(dict(type='PositionAttention', dim=16))
    theirs = build_peer(ours).eval()
    x = torch.randn(2, 16, 5, 6)
    with torch.no_grad():
        tokens = theirs(x)
        assert tokens.shape == (2, 30, 16)                           # a map in, tokens out
        torch.testing.assert_close(ours(x), x + ours.gamma.scale * tokens_to_map(tokens, (5, 6)),
                                   rtol=1e-5, atol=1e-5)
        theirs.pa.fc_q.weight /= 16 ** 0.5                            # its own scaling back
        theirs.pa.fc_q.bias /= 16 ** 0.5
        assert (x + ours.gamma.scale * tokens_to_map(theirs(x), (5, 6)) - ours(x)).abs().max() > 1e-2
    fresh = _catalogue('DANet', 'PositionAttentionModule')(d_model=16).eval()
    assert not any('gamma' in n for n, _ in fresh.named_parameters())
    untrained = ATTENTION.build(dict(type='PositionAttention', dim=16)).eval()
    with torch.no_grad():
        torch.testing.assert_close(untrained(x), x)                  # ours starts as the identity


def test_catalogue_channel_attention_fixes_the_map_size_and_flips_the_energy():
    cls = _catalogue('DANet', 'ChannelAttentionModule')
    theirs = cls(d_model=8, kernel_size=3, H=4, W=4).eval()
    with pytest.raises(RuntimeError):
        theirs(torch.randn(2, 8, 5, 6))                     # its output Linear is over 4 * 4 positions
    ours = build(dict(type='ChannelAttention', dim=8))
    assert ours(torch.randn(2, 8, 5, 6)).shape == (2, 8, 5, 6)
    # with its 3x3 conv and output projection set to the identity it computes softmax(+E / sqrt(HW)) X,
    # the reverse order of DANet's softmax(max E - E) X (official code)
    with torch.no_grad():
        theirs.cnn.weight.zero_()
        theirs.cnn.weight[:, :, 1, 1] = torch.eye(8)
        theirs.cnn.bias.zero_()
        theirs.pa.fc_o.weight.copy_(torch.eye(16))
        theirs.pa.fc_o.bias.zero_()
        x = torch.randn(2, 8, 4, 4)
        f = _flat(x)
        flipped = torch.einsum('bij,bjn->bin', softmax(torch.einsum('bin,bjn->bij', f, f) / 4.0, dim=2), f)
        torch.testing.assert_close(theirs(x), flipped, rtol=1e-5, atol=1e-5)
        ours.gamma.scale.fill_(1.0)
        danet = ours(x) - x
        assert (danet.flatten(2) - flipped).abs().max() > 0.1


def test_catalogue_cot_replaces_local_aggregation_by_a_global_softmax():
    """Its dynamic context is softmax_N(.) * V: each channel's weights sum to one over the whole map and
    a pixel far outside the k x k window changes the output; our kernels only reach the window."""
    cls = _catalogue('CoTAttention', 'CoTAttention')
    torch.manual_seed(0)
    theirs = cls(dim=16, kernel_size=3).eval()
    x = torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        dynamic = theirs(x) - theirs.key_embed(x)
        values = theirs.value_embed(x).flatten(2)
        torch.testing.assert_close((dynamic.flatten(2) / values).sum(-1), torch.ones(1, 16), rtol=1e-4, atol=1e-4)
        far = x.clone()
        far[:, :, 8, 8] += 5.0                                   # 8 pixels away from (0, 0)
        assert (theirs(far) - theirs(x))[:, :, 0, 0].abs().max() > 1e-6
    ours = build(dict(type='CoTAttention', dim=16))
    with torch.no_grad():
        _, kernels = ours(x, return_attn=True)
        dense = ours.dense_attention(kernels, (9, 9))                       # (1, 2, 81, 81)
    reach = torch.zeros(81, 81, dtype=torch.bool)
    for p in range(81):
        for q in range(81):
            reach[p, q] = abs(p // 9 - q // 9) <= 1 and abs(p % 9 - q % 9) <= 1
    assert torch.all(dense[..., ~reach] == 0) and torch.all(dense[..., reach] != 0)


def test_catalogue_acmix_fails_in_float64_on_small_maps_and_for_other_conv_kernels():
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    for cfg, shape, dtype in [(dict(type='ACmix', dim=8, num_heads=2), (1, 8, 5, 5), torch.float64),   # grid in fp32
                              (dict(type='ACmix', dim=8, num_heads=2), (1, 8, 3, 3), torch.float32),   # pad 3 >= 3
                              (dict(type='ACmix', dim=8, num_heads=2), (1, 8, 6, 1), torch.float32),   # N x 1
                              (dict(type='ACmix', dim=8, num_heads=2, kernel_conv=5), (1, 8, 6, 6), torch.float32)]:
        ours = build(cfg, dtype)
        theirs = build_peer(ours)
        x = torch.randn(shape, dtype=dtype)
        with pytest.raises(RuntimeError):
            theirs(x)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), acmix(ours, x))


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize('name', ['PositionAttention', 'ChannelAttention', 'DoubleAttention'])
def test_global_ops_are_equivariant_to_a_permutation_of_positions(name):
    """Non-local ops built from 1x1 convolutions see the positions as a set."""
    op = build(dict(type=name, dim=16))
    x = torch.randn(2, 16, 4, 5)
    perm = torch.randperm(20)
    shuffle = lambda t: t.flatten(2)[:, :, perm].reshape(t.shape)   # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(op(shuffle(x)), shuffle(op(x)), rtol=1e-5, atol=1e-5)


def test_position_attention_fused_path_keeps_no_n_by_n_matrix():
    """SDPA's fused kernel (queries and keys zero-padded to the value width) saves O(N C) for backward."""
    from tools.benchmark_ops import saved_bytes
    op = build(dict(type='PositionAttention', dim=16), train=True)
    x = torch.randn(1, 16, 32, 32, requires_grad=True)
    n_by_n = (32 * 32) ** 2 * 4                                      # the float32 (N, N) weights: 4 MiB
    assert saved_bytes(op, (x,)) < n_by_n / 8
    _, w = op(x, return_attn=True)                                   # the explicit path forms them
    assert w.shape == (1, 1, 1024, 1024)


def test_double_attention_is_invariant_to_a_permutation_of_its_gather_maps():
    """Relabelling the n gathered descriptors (convB and convV rows together) changes nothing."""
    op = build(dict(type='DoubleAttention', dim=16, c_n=6))
    x = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        ref = op(x)
        perm = torch.randperm(6)
        for conv in (op.convB, op.convV):
            conv.weight.copy_(conv.weight[perm])
            conv.bias.copy_(conv.bias[perm])
        torch.testing.assert_close(op(x), ref, rtol=1e-5, atol=1e-5)


def test_dual_attention_starts_as_its_two_conv_branches():
    """gamma = 0 in PAM and CAM: the untrained op is the sum of its conv branches."""
    op = ATTENTION.build(dict(type='DualAttention', dim=8)).eval()
    x = torch.randn(2, 8, 4, 5)
    with torch.no_grad():
        expected = op.pam_out_conv(op.pam_in_conv(x)) + op.cam_out_conv(op.cam_in_conv(x))
        torch.testing.assert_close(op(x), expected)


def test_channel_weights_rows_sum_to_one_and_are_refused_as_return_attn():
    op = build(dict(type='ChannelAttention', dim=8), torch.float64)
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    w = op.channel_weights(x)
    torch.testing.assert_close(w[:, 0], channel_weights(x))
    with pytest.raises(ValueError, match=r'forms no attention map over tokens .* op.channel_weights\(x\)'):
        op(x, return_attn=True)


@pytest.mark.parametrize('cfg,hw', [(dict(type='DoubleAttention', dim=8), (3, 4)),
                                    (dict(type='CoTAttention', dim=16), (4, 3)),
                                    (dict(type='ACmix', dim=8, num_heads=2), (4, 5)),
                                    (dict(type='ACmix', dim=8, num_heads=2, kernel_att=5), (2, 3))])
def test_dense_attention_reproduces_the_attention_path(cfg, hw):
    """The (N x N) form of the returned weights, applied to the values, gives the op's aggregation."""
    op = build(cfg, torch.float64)
    x = torch.randn(2, cfg['dim'], *hw, dtype=torch.float64)
    out, w = op(x, return_attn=True)
    dense = op.dense_attention(w, hw)
    n = hw[0] * hw[1]
    if cfg['type'] == 'DoubleAttention':
        expected = conv1x1(torch.einsum('bij,bmj->bmi', dense[:, 0], _flat(conv1x1(x, op.convA))).reshape(
            2, -1, *hw), op.conv_reconstruct)
        torch.testing.assert_close(dense.sum(-1), torch.ones(2, 1, n, dtype=torch.float64))
    elif cfg['type'] == 'CoTAttention':      # channel c takes the kernels of group c mod C/8
        values = _flat(batch_norm_eval(conv1x1(x, op.conv1x1[0]), op.conv1x1[1]))
        mixed = torch.einsum('bcpq,bcq->bcp', dense[:, torch.arange(16) % 2], values)
        torch.testing.assert_close(mixed.reshape(2, 16, *hw), _cot_dynamic(op, x))
        return
    else:
        op.rate2.data.zero_()
        heads, d = op.num_heads, cfg['dim'] // op.num_heads
        v = conv1x1(x, op.conv3).reshape(2, heads, d, n)
        expected = op.rate1 * torch.einsum('bhpq,bhdq->bhdp', dense, v).reshape(x.shape)
        out = op(x)
        torch.testing.assert_close(dense.sum(-1), torch.ones(2, heads, n, dtype=torch.float64))
    torch.testing.assert_close(out, expected)


def _cot_dynamic(op, x):
    """CoT's aggregation before BN (written out, as in :func:`cot_attention`)."""
    b, c, hgt, wid = x.shape
    k, groups = op.kernel_size, c // 8
    kernels = cot_kernels(op, x)
    padded = F.pad(batch_norm_eval(conv1x1(x, op.conv1x1[0]), op.conv1x1[1]), (k // 2,) * 4)
    out = torch.zeros(b, c, hgt, wid, dtype=x.dtype)
    for ch in range(c):
        for o in range(k * k):
            out[:, ch] += kernels[:, ch % groups, o] * padded[:, ch, o // k:o // k + hgt, o % k:o % k + wid]
    return out


def test_acmix_starts_with_shift_kernels_and_half_rates():
    op = ATTENTION.build(dict(type='ACmix', dim=8, num_heads=2))
    assert float(op.rate1) == 0.5 and float(op.rate2) == 0.5 and op.dep_conv.bias is None
    w = op.dep_conv.weight                                                    # (C, K^2, 3, 3)
    for i in range(9):
        assert torch.all(w[:, i].flatten(1).argmax(1) == i) and torch.all(w[:, i].sum((1, 2)) == 1)
    assert set(op.state_dict()) == {'rate1', 'rate2', 'conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias',
                                    'conv3.weight', 'conv3.bias', 'conv_p.weight', 'conv_p.bias', 'fc.weight',
                                    'dep_conv.weight'}                      # the official names


def test_ops_with_norms_take_norm_cfg():
    for name in ('DualAttention', 'CoTAttention'):
        op = ATTENTION.build(dict(type=name, dim=16, norm_cfg=dict(type='GN', num_groups=4)))
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in op.modules()), name
        assert op(torch.randn(1, 16, 3, 3)).shape == (1, 16, 3, 3)


@pytest.mark.parametrize('cfg,match', [
    (dict(type='PositionAttention', dim=4), 'need 1 <= reduction <= dim .* got dim=4, reduction=8'),
    (dict(type='DoubleAttention', dim=16, c_m=8, reconstruct=False),
     'without reconstruct the output has c_m channels, which must equal dim .* got c_m=8, dim=16'),
    (dict(type='DoubleAttention', dim=16, c_n=0), 'c_m and c_n must be >= 1, got c_m=4, c_n=0'),
    (dict(type='CoTAttention', dim=12), 'dim must be divisible by 8 .* got 12'),
    (dict(type='CoTAttention', dim=16, kernel_size=4), 'kernel_size must be odd, got 4'),
    (dict(type='ACmix', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='ACmix', dim=8, kernel_att=6), 'must be odd, got kernel_att=6, kernel_conv=3'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
