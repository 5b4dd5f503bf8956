"""Channel attention (SE, SK, ECA, SGE, SA-Net, EPSANet, ParNet, S2-MLPv2): written-out formulas,
the catalogue with weights copied where it is right, its defects where it is not, gate properties."""
import math

import pytest
import torch
import torch.nn.functional as F

from attn_ops import ATTENTION
from attn_ops.ops.channel import spatial_shift
from tests.ops.common import Case, PeerCase, batch_norm_eval, build, catalogue_diff, catalogue_test, formula_test, \
    gradcheck_test, softmax


# ----------------------------------------------------------------------------- written-out helpers
def sigmoid(t):
    return 1.0 / (1.0 + torch.exp(-t))


def relu(t):
    return t.clamp(min=0)


def mean_hw(x):
    """(B, C, H, W) -> (B, C): the sum over positions divided by their number."""
    return x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])


def conv2d(x, weight, padding=0, dilation=1):
    """A 'same' 2D convolution as a sum over kernel offsets; groups read from the weight shape
    (a grouped weight is laid out block-diagonally over all input channels)."""
    b, cin, h, w = x.shape
    cout, cpg, kh, kw = weight.shape
    groups, opg = cin // cpg, cout // (cin // cpg)
    full = torch.zeros(cout, cin, kh, kw, dtype=weight.dtype)
    for g in range(groups):
        full[g * opg:(g + 1) * opg, g * cpg:(g + 1) * cpg] = weight[g * opg:(g + 1) * opg]
    xp = F.pad(x, (padding, padding, padding, padding))
    out = 0
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dilation:i * dilation + h, j * dilation:j * dilation + w]
            out = out + torch.einsum('oc,bchw->bohw', full[:, :, i, j], patch)
    return out


# ----------------------------------------------------------------------------- formulas
def se_gate(op, x):
    z = mean_hw(x)
    return sigmoid(relu(z @ op.fc1.weight.T) @ op.fc2.weight.T)[:, :, None, None]


def se(op, x):
    return x * se_gate(op, x)


def sk(op, x):
    """Split (paper geometry: k > 3 is a 3x3 kernel of dilation (k-1)/2), fuse, select over branches."""
    feats = []
    for k, branch in zip(op.kernels, op.branches):
        rate = (k - 1) // 2 if (op.dilate and k > 3) else 1
        pad = rate if (op.dilate and k > 3) else k // 2
        feats.append(relu(batch_norm_eval(conv2d(x, branch[0].weight, pad, rate), branch[1])))
    s = mean_hw(sum(feats))                                                    # (B, C)
    z = relu(batch_norm_eval(s @ op.fc.weight[:, :, 0, 0].T, op.fc_norm))      # (B, d)
    c = op.dim
    logits = torch.stack([z @ op.select.weight[m * c:(m + 1) * c, :, 0, 0].T for m in range(len(feats))])
    a = softmax(logits, dim=0)                                                 # across the M branches
    return sum(a[m][:, :, None, None] * feats[m] for m in range(len(feats)))


def nearest_odd(t):
    """The odd number nearest to t, ties to the larger."""
    return min(range(1, 2 * int(t) + 4, 2), key=lambda o: (abs(t - o), -o))


def eca_gate(op, x):
    z = mean_hw(x)                                                             # (B, C)
    k, c = op.kernel_size, x.shape[1]
    w = op.conv.weight[0, 0]
    logits = torch.zeros_like(z)
    for ch in range(c):                       # zero padding: neighbours outside [0, C) contribute nothing
        for j in range(k):
            src = ch + j - (k - 1) // 2
            if 0 <= src < c:
                logits[:, ch] = logits[:, ch] + w[j] * z[:, src]
    return sigmoid(logits)[:, :, None, None]


def eca(op, x):
    return x * eca_gate(op, x)


def sge_gate(op, x):
    """(B, C, H, W): per group, similarity to the group mean, standardised over positions."""
    b, c, h, w = x.shape
    g, per = op.groups, c // op.groups
    gates = []
    for k in range(g):
        xg = x[:, k * per:(k + 1) * per]
        sim = (xg * mean_hw(xg)[:, :, None, None]).sum(dim=1).reshape(b, h * w)
        centred = sim - sim.sum(dim=1, keepdim=True) / (h * w)
        std = torch.sqrt((centred ** 2).sum(dim=1, keepdim=True) / (h * w - 1))     # unbiased
        norm = (centred / (std + 1e-5)).reshape(b, 1, h, w)
        gates.append(sigmoid(op.weight[0, k] * norm + op.bias[0, k]).expand(b, per, h, w))
    return torch.cat(gates, dim=1)


def sge(op, x):
    return x * sge_gate(op, x)


def shuffle_attention(op, x):
    b, c, h, w = x.shape
    per, half = c // op.groups, c // (2 * op.groups)
    cw, cb, sw, sb = (p.view(1, half, 1, 1) for p in (op.cweight, op.cbias, op.sweight, op.sbias))
    parts = []
    for k in range(op.groups):
        x1, x2 = x[:, k * per:k * per + half], x[:, k * per + half:(k + 1) * per]
        parts.append(x1 * sigmoid(cw * mean_hw(x1)[:, :, None, None] + cb))
        mu = mean_hw(x2)[:, :, None, None]
        var = mean_hw((x2 - mu) ** 2)[:, :, None, None]                       # biased, as GroupNorm
        gn = (x2 - mu) / torch.sqrt(var + op.gn.eps) * op.gn.weight.view(1, half, 1, 1) + op.gn.bias.view(1, half, 1, 1)
        parts.append(x2 * sigmoid(sw * gn + sb))
    z = torch.cat(parts, dim=1)
    out = torch.empty_like(z)
    for i in range(c // 2):                   # channel shuffle with 2 groups
        for hh in range(2):
            out[:, 2 * i + hh] = z[:, hh * (c // 2) + i]
    return out


def pyramid_split(op, x):
    feats = [conv2d(x, conv.weight, k // 2) for k, conv in zip(op.kernels, op.convs)]
    fc1, fc2 = op.fc1.weight[:, :, 0, 0], op.fc2.weight[:, :, 0, 0]
    scores = [sigmoid(relu(mean_hw(f) @ fc1.T + op.fc1.bias) @ fc2.T + op.fc2.bias) for f in feats]   # shared SE
    att = softmax(torch.stack(scores), dim=0)                                 # across the S branches
    return torch.cat([f * a[:, :, None, None] for f, a in zip(feats, att)], dim=1)


def parnet(op, x):
    skip = batch_norm_eval(x, op.skip_norm)
    gate = sigmoid(mean_hw(skip) @ op.sse.weight[:, :, 0, 0].T)[:, :, None, None]
    y = (batch_norm_eval(conv2d(x, op.conv1x1[0].weight), op.conv1x1[1])
         + batch_norm_eval(conv2d(x, op.conv3x3[0].weight, 1), op.conv3x3[1]) + skip * gate)
    return y * sigmoid(y)                                                      # SiLU


def shift_ref(t, moves):
    """Out-of-place shifts of channel quarters of (B, H, W, C); the border keeps its own value."""
    c = t.shape[-1]
    out = t.clone()
    for q, (axis, step) in enumerate(moves):
        sl = slice([0, c // 4, c // 2, c * 3 // 4][q], [c // 4, c // 2, c * 3 // 4, c][q])
        if axis == 1 and step == 1:
            out[:, 1:, :, sl] = t[:, :-1, :, sl]
        elif axis == 1:
            out[:, :-1, :, sl] = t[:, 1:, :, sl]
        elif step == 1:
            out[:, :, 1:, sl] = t[:, :, :-1, sl]
        else:
            out[:, :, :-1, sl] = t[:, :, 1:, sl]
    return out


SHIFT1 = ((1, 1), (1, -1), (2, 1), (2, -1))   # +H, -H, +W, -W on the four channel quarters
SHIFT2 = ((2, 1), (2, -1), (1, 1), (1, -1))


def s2_attention(op, x):
    c = x.shape[1]
    t = x.permute(0, 2, 3, 1) @ op.mlp1.weight.T + op.mlp1.bias              # (B, H, W, 3C)
    branches = [shift_ref(t[..., :c], SHIFT1), shift_ref(t[..., c:2 * c], SHIFT2), t[..., 2 * c:]]
    a = sum(br.sum(dim=(1, 2)) for br in branches)                            # (B, C): branches and positions
    hid = a @ op.attn_mlp1.weight.T
    hid = 0.5 * hid * (1 + torch.erf(hid / math.sqrt(2)))                    # exact GELU
    logits = (hid @ op.attn_mlp2.weight.T).view(-1, 3, c)
    bar = softmax(logits, dim=1)                                              # across the 3 branches
    out = sum(bar[:, k, None, None, :] * branches[k] for k in range(3))
    return (out @ op.mlp2.weight.T + op.mlp2.bias).permute(0, 3, 1, 2)


CASES = [
    Case(dict(type='SEAttention', dim=16, reduction=4), (2, 16, 3, 4), se, lambda op, x: se_gate(op, x)),
    Case(dict(type='SKAttention', dim=8, kernels=(3, 5), groups=2, L=4), (2, 8, 5, 4), sk),
    Case(dict(type='SKAttention', dim=8, kernels=(1, 3, 7), groups=4, L=4, dilate=False), (2, 8, 4, 3), sk,
         id='SKAttention-dense-kernels'),
    Case(dict(type='ECAAttention', dim=16), (2, 16, 3, 3), eca, lambda op, x: eca_gate(op, x)),
    Case(dict(type='ECAAttention', dim=10, kernel_size=5), (2, 10, 2, 3), eca, lambda op, x: eca_gate(op, x)),
    Case(dict(type='SpatialGroupEnhance', dim=12, groups=3), (2, 12, 3, 4), sge, lambda op, x: sge_gate(op, x)),
    Case(dict(type='SpatialGroupEnhance', dim=8, groups=8), (2, 8, 5, 1), sge, lambda op, x: sge_gate(op, x),
         id='SpatialGroupEnhance-Nx1'),
    Case(dict(type='ShuffleAttention', dim=16, groups=2), (2, 16, 3, 4), shuffle_attention),
    Case(dict(type='ShuffleAttention', dim=12, groups=3), (2, 12, 4, 1), shuffle_attention,
         id='ShuffleAttention-Nx1'),
    Case(dict(type='PyramidSplitAttention', dim=16, reduction=2), (2, 16, 4, 5), pyramid_split),
    Case(dict(type='PyramidSplitAttention', dim=12, kernels=(3, 5, 9), groups=(1, 2, 4), reduction=1),
         (2, 12, 3, 3), pyramid_split, id='PyramidSplitAttention-3-branches'),
    Case(dict(type='ParNetAttention', dim=8), (2, 8, 4, 3), parnet),
    Case(dict(type='S2Attention', dim=8), (2, 8, 4, 5), s2_attention),
    Case(dict(type='S2Attention', dim=10), (2, 10, 3, 1), s2_attention, id='S2Attention-odd-quarters-Nx1'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test([c for c in CASES if 'dense' not in c.id])


# ----------------------------------------------------------------------------- the catalogue
test_catalogue = catalogue_test([
    PeerCase(dict(type='SEAttention', dim=32), (2, 32, 5, 6)),
    PeerCase(dict(type='SEAttention', dim=64, reduction=8), (2, 64, 7, 7)),
    # SK with the paper's fuse step added to the catalogue (see the defect test below)
    PeerCase(dict(type='SKAttention', dim=32, kernels=(1, 3, 5, 7), groups=1, dilate=False), (2, 32, 6, 5),
             std=0.1),
    PeerCase(dict(type='SKAttention', dim=32, groups=4), (2, 32, 7, 7), id='SKAttention-dilated'),
    PeerCase(dict(type='SKAttention', dim=32, groups=8), (4, 32, 5, 6), train=True, id='SKAttention-train'),
    # ECA given our kernel size, without the bias the official code does not have
    PeerCase(dict(type='ECAAttention', dim=16), (2, 16, 5, 5)),
    PeerCase(dict(type='ECAAttention', dim=256), (2, 256, 3, 4)),
    PeerCase(dict(type='ECAAttention', dim=32, kernel_size=7), (2, 32, 4, 4)),
    PeerCase(dict(type='SpatialGroupEnhance', dim=32, groups=8), (2, 32, 6, 5)),
    PeerCase(dict(type='SpatialGroupEnhance', dim=64), (2, 64, 4, 7)),
    PeerCase(dict(type='ShuffleAttention', dim=32, groups=4), (2, 32, 6, 5)),
    PeerCase(dict(type='ShuffleAttention', dim=64), (2, 64, 5, 5), train=True),
    # S2 with its split attention built for our width, on maps where its in-place shifts cannot smear
    PeerCase(dict(type='S2Attention', dim=16), (2, 16, 2, 2)),
    PeerCase(dict(type='S2Attention', dim=24), (2, 24, 2, 1)),
])


def _peer(cfg, fixed=True, std=0.3, train=False):
    from tools.peers.catalogue import build_peer
    op = build(cfg, torch.float32, train, std)
    return op, build_peer(op, fixed=fixed)


def test_catalogue_psa_registers_no_parameters_and_ours_trains_moves_and_saves_them():
    pytest.importorskip('fightingcv_attention')
    from fightingcv_attention.attention.PSA import PSA
    theirs = PSA(channel=64)
    assert sum(p.numel() for p in theirs.parameters()) == 0 and len(theirs.state_dict()) == 0
    theirs.double()                                   # .to() never reaches its list-held convolutions
    assert theirs.convs[0].weight.dtype == torch.float32

    ours = ATTENTION.build(dict(type='PyramidSplitAttention', dim=64))
    keys = set(ours.state_dict())
    assert {f'convs.{i}.weight' for i in range(4)} | {'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'} == keys
    assert sum(p.numel() for p in ours.parameters()) == sum(v.numel() for v in ours.state_dict().values()) > 0
    assert all(p.dtype == torch.float64 for p in ours.double().parameters())
    ours.float()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    ours(torch.randn(2, 64, 5, 5)).square().mean().backward()
    opt.step()
    assert all(not torch.equal(before[k], v) for k, v in ours.state_dict().items())   # every tensor trained
    restored = ATTENTION.build(dict(type='PyramidSplitAttention', dim=64))
    restored.load_state_dict(ours.state_dict())
    x = torch.randn(1, 64, 4, 4)
    torch.testing.assert_close(restored(x), ours(x))


def test_catalogue_psa_overwrites_its_input_and_ours_does_not():
    pytest.importorskip('fightingcv_attention')
    from fightingcv_attention.attention.PSA import PSA
    x = torch.randn(2, 64, 5, 5)
    kept = x.clone()
    with torch.no_grad():
        PSA(channel=64)(x)
    assert not torch.equal(x, kept), 'the catalogue writes its branch outputs into the caller tensor'
    leaf = torch.randn(2, 64, 5, 5, requires_grad=True)
    with pytest.raises(RuntimeError, match='leaf Variable that requires grad'):
        PSA(channel=64)(leaf)
    with pytest.raises(RuntimeError, match='modified by an inplace operation'):   # no backward at all
        PSA(channel=64)(leaf * 1.0).sum().backward()
    ours = ATTENTION.build(dict(type='PyramidSplitAttention', dim=64))
    ours(leaf).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    x = kept.clone()
    ours(x)
    assert torch.equal(x, kept)
    from tools.peers.catalogue import build_peer     # the benchmark's peer: registered, out of place
    peer = build_peer(ours)
    assert sum(p.numel() for p in peer.parameters()) > 0
    x = kept.clone().requires_grad_()
    peer(x).sum().backward()
    assert torch.equal(x.detach(), kept) and torch.isfinite(x.grad).all()


def test_psa_branches_convolve_the_whole_input_in_groups_with_one_shared_se():
    """The official EPSANet: conv_i sees all C channels in G_i groups (C/S out), one SE module for
    every branch. The catalogue's branch i convolves the i-th C/S split only, one SE each."""
    pytest.importorskip('fightingcv_attention')
    from fightingcv_attention.attention.PSA import PSA
    theirs = PSA(channel=64)
    assert [c.in_channels for c in theirs.convs] == [16] * 4 and len(theirs.se_blocks) == 4
    assert theirs.se_blocks[0][1].bias is None and theirs.se_blocks[0][1].out_channels == 16 // 4
    ours = ATTENTION.build(dict(type='PyramidSplitAttention', dim=64))
    assert [(c.in_channels, c.out_channels, c.groups, c.kernel_size[0]) for c in ours.convs] == \
        [(64, 16, 1, 3), (64, 16, 4, 5), (64, 16, 8, 7), (64, 16, 16, 9)]
    assert ours.fc1.in_channels == 16 and ours.fc1.out_channels == 1 and ours.fc1.bias is not None  # r = 16
    for conv, k in zip(ours.convs, (3, 5, 7, 9)):       # official init N(0, 2 / (k^2 out))
        assert abs(conv.weight.std().item() - math.sqrt(2 / (k * k * 16))) < 0.2 * math.sqrt(2 / (k * k * 16))


def test_catalogue_sk_fuse_step_lacks_bn_and_relu():
    """Paper: z = ReLU(BN(W s)). The catalogue's fc is a Linear alone; the peer equals ours only
    once BN + ReLU are added to it (the PeerCases above)."""
    pytest.importorskip('fightingcv_attention')
    cfg = dict(type='SKAttention', dim=32, kernels=(1, 3, 5, 7), groups=1, dilate=False)
    _, theirs = _peer(cfg, fixed=False)
    assert isinstance(theirs.fc, torch.nn.Linear)
    assert catalogue_diff(PeerCase(cfg, (2, 32, 6, 5), std=0.1, fixed=False)) > 1e-2
    assert catalogue_diff(PeerCase(cfg, (2, 32, 6, 5), std=0.1, fixed=True)) < 1e-5


def test_catalogue_eca_kernel_is_not_adaptive_and_has_a_bias():
    pytest.importorskip('fightingcv_attention')
    from fightingcv_attention.attention.ECAAttention import ECAAttention as CatalogueECA
    assert CatalogueECA().conv.kernel_size == (3,) and CatalogueECA().conv.bias is not None
    assert ATTENTION.build(dict(type='ECAAttention', dim=256)).kernel_size == 5      # adaptive: C = 256 -> 5
    assert ATTENTION.build(dict(type='ECAAttention', dim=256)).conv.bias is None
    cfg = dict(type='ECAAttention', dim=64)
    assert catalogue_diff(PeerCase(cfg, (2, 64, 4, 4), fixed=False)) > 1e-3        # its bias shifts the gate


@pytest.mark.parametrize('c', [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 100])
def test_eca_kernel_is_the_nearest_odd_of_the_paper_mapping(c):
    t = math.log2(c) / 2 + 1 / 2                                              # gamma = 2, b = 1
    assert ATTENTION.build(dict(type='ECAAttention', dim=c)).kernel_size == nearest_odd(t)
    assert ATTENTION.build(dict(type='ECAAttention', dim=c, kernel_size=9)).kernel_size == 9   # overridable


def test_catalogue_sge_starts_at_half_and_fails_on_1x1_maps():
    """Official init beta = 1 (gate sigmoid(1) at init); the catalogue's beta = 0 gates by 0.5. On a
    1 x 1 map the catalogue's unbiased std of one value is NaN; ours gates by sigmoid(beta)."""
    pytest.importorskip('fightingcv_attention')
    from fightingcv_attention.attention.SGE import SpatialGroupEnhance as CatalogueSGE
    x = torch.randn(2, 32, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(CatalogueSGE(groups=8)(x), 0.5 * x)
        ours = ATTENTION.build(dict(type='SpatialGroupEnhance', dim=32, groups=8))
        torch.testing.assert_close(ours(x), torch.sigmoid(torch.tensor(1.0)) * x)
        one = torch.randn(2, 32, 1, 1)
        assert torch.isnan(CatalogueSGE(groups=8)(one)).all()
        torch.testing.assert_close(ours(one), torch.sigmoid(torch.tensor(1.0)) * one)
    one.requires_grad_()
    ours(one).sum().backward()
    assert torch.isfinite(one.grad).all()


def test_constant_maps_give_finite_sge_gradients():
    op = build(dict(type='SpatialGroupEnhance', dim=8, groups=2), std=0.5)
    x = torch.ones(2, 8, 3, 3, requires_grad=True)
    op(x).sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in op.parameters())


def test_catalogue_parnet_skip_branch_lacks_its_batch_norm():
    """Equal to the catalogue when our skip norm is the identity; different as soon as it is not."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer, run_peer
    op, theirs = _peer(dict(type='ParNetAttention', dim=16))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in theirs.sse.modules())
    x = torch.randn(2, 16, 5, 6)
    with torch.no_grad():
        assert (op(x) - run_peer(op, theirs, x)).abs().max() > 1e-2
        norm = op.skip_norm                       # eval BN with these statistics is the identity
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0 - norm.eps)
        theirs = build_peer(op)
        assert (op(x) - run_peer(op, theirs, x)).abs().max() < 1e-5


def test_catalogue_s2_fails_off_512_channels_and_smears_its_shifts():
    pytest.importorskip('fightingcv_attention')
    from fightingcv_attention.attention.S2Attention import S2Attention as CatalogueS2, spatial_shift1
    with pytest.raises(RuntimeError, match='mat1 and mat2 shapes cannot be multiplied'):
        CatalogueS2(channels=64)(torch.randn(2, 64, 5, 5))
    ramp = torch.arange(5.0).view(1, 5, 1, 1).expand(1, 5, 3, 8).contiguous()   # value = row index
    smeared = spatial_shift1(ramp.clone())
    assert torch.all(smeared[0, :, 0, 0] == 0)                       # +1 along H: row 0 copied everywhere
    ours = spatial_shift(ramp, 1)
    assert ours[0, :, 0, 0].tolist() == [0, 0, 1, 2, 3]              # each row moved down by one
    assert ours[0, :, 0, 2].tolist() == [1, 2, 3, 4, 4]              # -1 along H
    torch.testing.assert_close(ours, shift_ref(ramp, SHIFT1))
    # with its split attention fixed, the catalogue equals ours on 2 x 2 maps only (PeerCases above)
    assert catalogue_diff(PeerCase(dict(type='S2Attention', dim=16), (2, 16, 6, 6))) > 1e-3


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize('name', ['SEAttention', 'ECAAttention', 'SpatialGroupEnhance'])
def test_gates_are_in_0_1_and_broadcast_as_the_paper(name):
    op = build(dict(type=name, dim=16), std=1.0)
    x = torch.randn(3, 16, 5, 4) * 3
    with torch.no_grad():
        out, g = op(x, return_attn=True)
    assert ((g > 0) & (g < 1)).all()
    torch.testing.assert_close(out, x * g)
    if name == 'SpatialGroupEnhance':            # one (H, W) map per group, repeated over its channels
        assert g.shape == x.shape
        per = 16 // op.groups
        grouped = g.view(3, op.groups, per, 5, 4)
        torch.testing.assert_close(grouped, grouped[:, :, :1].expand_as(grouped))
    else:                                        # one weight per sample and channel
        assert g.shape == (3, 16, 1, 1)


def test_sge_is_equivariant_to_a_permutation_of_groups():
    op = build(dict(type='SpatialGroupEnhance', dim=12, groups=4), torch.float64)
    x = torch.randn(2, 12, 4, 5, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    chans = (perm[:, None] * 3 + torch.arange(3)).flatten()
    permuted = build(dict(type='SpatialGroupEnhance', dim=12, groups=4), torch.float64)
    with torch.no_grad():
        permuted.weight.copy_(op.weight[:, perm])
        permuted.bias.copy_(op.bias[:, perm])
        torch.testing.assert_close(permuted(x[:, chans]), op(x)[:, chans])


def test_shuffle_attention_keeps_groups_apart_and_shuffles_halves():
    """Only group k's input reaches the channels SA-Net's shuffle sends group k to: channel
    h * C/2 + i of the concatenation lands at 2 i + h."""
    op = build(dict(type='ShuffleAttention', dim=16, groups=2))
    x = torch.zeros(1, 16, 3, 3)
    x[:, 8:] = torch.randn(1, 8, 3, 3)             # group 1 only: concatenated channels 8..15
    with torch.no_grad():
        y = op(x)
    live = (y.abs().sum(dim=(0, 2, 3)) > 0).nonzero().flatten().tolist()
    assert live == sorted(2 * (j % 8) + j // 8 for j in range(8, 16))


def test_sk_selection_is_invariant_to_the_order_of_branches():
    """The softmax runs across branches: listing them in another order (weights moved along) gives
    the same output."""
    op = build(dict(type='SKAttention', dim=8, kernels=(3, 5, 7), groups=2, L=4), torch.float64)
    rev = build(dict(type='SKAttention', dim=8, kernels=(7, 5, 3), groups=2, L=4), torch.float64)
    with torch.no_grad():
        for i, j in ((0, 2), (1, 1), (2, 0)):
            rev.branches[i].load_state_dict(op.branches[j].state_dict())
            rev.select.weight[i * 8:(i + 1) * 8] = op.select.weight[j * 8:(j + 1) * 8]
        rev.fc.load_state_dict(op.fc.state_dict())
        rev.fc_norm.load_state_dict(op.fc_norm.state_dict())
        x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
        torch.testing.assert_close(rev(x), op(x))


def test_paper_group_counts_are_reduced_to_fit_narrow_maps():
    def groups(name, dim, **kw):
        return ATTENTION.build(dict(type=name, dim=dim, **kw)).groups
    assert groups('SKAttention', 64) == 32 and groups('SKAttention', 16) == 16 and groups('SKAttention', 48) == 16
    assert groups('SpatialGroupEnhance', 256) == 64 and groups('SpatialGroupEnhance', 96) == 32
    assert groups('ShuffleAttention', 256) == 64 and groups('ShuffleAttention', 16) == 8
    assert groups('PyramidSplitAttention', 64) == (1, 4, 8, 16) and groups('PyramidSplitAttention', 16) == (1, 4, 4, 4)
    assert groups('SKAttention', 64, groups=4) == 4                   # an explicit count is kept


def test_sk_dilates_large_kernels_as_the_paper():
    op = ATTENTION.build(dict(type='SKAttention', dim=64))
    convs = [b[0] for b in op.branches]
    assert [(c.kernel_size, c.dilation, c.padding, c.groups) for c in convs] == \
        [((3, 3), (1, 1), (1, 1), 32), ((3, 3), (2, 2), (2, 2), 32)]
    assert op.d == 32 and op.select.out_channels == 2 * 64                 # d = max(C / 16, L)
    dense = ATTENTION.build(dict(type='SKAttention', dim=64, dilate=False))
    assert dense.branches[1][0].kernel_size == (5, 5)


def test_ops_with_norms_take_norm_cfg():
    for name in ('SKAttention', 'ParNetAttention'):
        op = ATTENTION.build(dict(type=name, dim=16, norm_cfg=dict(type='GN', num_groups=4)))
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in op.modules())
        assert any(isinstance(m, torch.nn.GroupNorm) for m in op.modules())


@pytest.mark.parametrize('cfg,match', [
    (dict(type='SEAttention', dim=16, reduction=0), 'reduction must be a positive integer, got 0'),
    (dict(type='SKAttention', dim=16, groups=3), 'groups=3 must divide dim=16'),
    (dict(type='SKAttention', dim=16, kernels=(3, 4)),
     r'kernels must be odd positive sizes, one per branch, got \(3, 4\)'),
    (dict(type='ECAAttention', dim=16, kernel_size=4), 'kernel_size must be an odd positive integer or None'),
    (dict(type='SpatialGroupEnhance', dim=16, groups=5), 'groups=5 must divide dim=16'),
    (dict(type='ShuffleAttention', dim=15), 'dim must be even'),
    (dict(type='ShuffleAttention', dim=16, groups=3), r'groups=3 must divide dim // 2=8'),
    (dict(type='PyramidSplitAttention', dim=18),
     r'dim=18 must be divisible by the number of branches S=len\(kernels\)=4'),
    (dict(type='PyramidSplitAttention', dim=16, groups=(1, 2)), r'groups needs one entry per kernel \(4\)'),
    (dict(type='PyramidSplitAttention', dim=16, groups=(1, 2, 3, 4)), r'every group count must divide dim // S=4'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
