"""Spatial and channel-spatial gates (CBAM, BAM, SimAM, triplet, coordinate, polarized): written-out
formulas, the catalogue with weights copied where it is right, its defects where it is not, and the
gates' ranges, broadcasts and symmetries."""
import math

import pytest
import torch

from attn_ops import ATTENTION
from tests.ops.common import Case, PeerCase, batch_norm_eval, build, catalogue_test, conv1x1, \
    formula_test, gradcheck_test, softmax


# ----------------------------------------------------------------------------- written-out helpers
def sigmoid(t):
    return 1.0 / (1.0 + torch.exp(-t))


def relu(t):
    return t.clamp(min=0)


def mean_over(x, dims):
    """The sum over ``dims`` divided by the number of summed values (dims kept)."""
    return x.sum(dim=dims, keepdim=True) / math.prod(x.shape[d] for d in dims)


def max_over(x, dim):
    return x.max(dim=dim, keepdim=True).values


def conv2d(x, weight, bias=None, padding=0, dilation=1):
    """A dense 2D convolution with zero padding as a sum over kernel offsets."""
    _, _, h, w = x.shape
    _, _, kh, kw = weight.shape
    xp = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    hout, wout = h + 2 * padding - dilation * (kh - 1), w + 2 * padding - dilation * (kw - 1)
    out = 0
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dilation:i * dilation + hout, j * dilation:j * dilation + wout]
            out = out + torch.einsum('oc,bchw->bohw', weight[:, :, i, j], patch)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


# ----------------------------------------------------------------------------- formulas
def cbam_factors(op, x):
    """(M_c (B, C, 1, 1), M_s (B, 1, H, W)): channel gate on X, spatial gate on M_c * X."""
    def mlp(v):                                                   # (B, C, 1, 1) -> (B, C): shared, bias-free
        return relu(v.flatten(1) @ op.fc1.weight.T) @ op.fc2.weight.T
    mc = sigmoid(mlp(mean_over(x, (2, 3))) + mlp(max_over(max_over(x, 2), 3)))[:, :, None, None]
    refined = mc * x
    planes = torch.cat([mean_over(refined, (1,)), max_over(refined, 1)], dim=1)   # [avg; max] over channels
    k = op.conv.kernel_size[0]
    return mc, sigmoid(conv2d(planes, op.conv.weight, op.conv.bias, padding=k // 2))


def cbam(op, x):
    mc, ms = cbam_factors(op, x)
    return ms * (mc * x)


def cbam_gate(op, x):
    mc, ms = cbam_factors(op, x)
    return (mc * ms).expand_as(x)


def bam_branches(op, x):
    """(M_c (B, C, 1, 1), M_s (B, 1, H, W)), the paper's Eq. 3-4 with the official hidden BN + ReLU."""
    fc0, bn0, _, fc1, bn1 = op.channel
    hidden = relu(batch_norm_eval(mean_over(x, (2, 3)).flatten(1) @ fc0.weight.T + fc0.bias, bn0))
    mc = batch_norm_eval(hidden @ fc1.weight.T + fc1.bias, bn1)[:, :, None, None]
    s = op.spatial
    d = op.dilation
    t = relu(batch_norm_eval(conv1x1(x, s[0]), s[1]))
    t = relu(batch_norm_eval(conv2d(t, s[3].weight, s[3].bias, padding=d, dilation=d), s[4]))
    t = relu(batch_norm_eval(conv2d(t, s[6].weight, s[6].bias, padding=d, dilation=d), s[7]))
    return mc, batch_norm_eval(conv1x1(t, s[9]), s[10])


def bam(op, x):
    mc, ms = bam_branches(op, x)
    return x + x * sigmoid(mc + ms)


def bam_gate(op, x):
    mc, ms = bam_branches(op, x)
    return (1 + sigmoid(mc + ms)).expand_as(x)


def simam_gate(op, x):
    n = x.shape[2] * x.shape[3] - 1
    d = (x - mean_over(x, (2, 3))) ** 2
    inv_energy = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + op.e_lambda)) + 0.5
    return sigmoid(inv_energy)


def simam(op, x):
    return x * simam_gate(op, x)


def triplet_gate(op, x):
    """The paper's rotations: turn the tensor so the pooled axis comes first, Z-pool it, convolve
    the other two, turn the gate back; average the branches."""
    def branch(t, seq):                                                # t: (B, A, P, Q), pool A
        planes = torch.cat([max_over(t, 1), mean_over(t, (1,))], dim=1)
        k = seq[0].kernel_size[0]
        return sigmoid(batch_norm_eval(conv2d(planes, seq[0].weight, padding=k // 2), seq[1]))
    gates = [branch(x.permute(0, 2, 1, 3), op.cw).permute(0, 2, 1, 3),      # rotate about W: (C, W) plane
             branch(x.permute(0, 3, 2, 1), op.hc).permute(0, 3, 2, 1)]      # rotate about H: (H, C) plane
    if not op.no_spatial:
        gates.append(branch(x, op.hw))                                      # (H, W) plane
    return (sum(gates) / len(gates)).expand_as(x)


def triplet(op, x):
    return x * triplet_gate(op, x)


def coord_gate(op, x):
    h = x.shape[2]
    pooled = torch.cat([mean_over(x, (3,))[..., 0], mean_over(x, (2,))[:, :, 0]], dim=2)   # (B, C, H + W)
    f = torch.einsum('mc,bcl->bml', op.conv1.weight[:, :, 0, 0], pooled) + op.conv1.bias[:, None]
    f = batch_norm_eval(f, op.norm)
    f = f * (f + 3).clamp(0, 6) / 6                                                       # h-swish
    a_h = sigmoid(torch.einsum('cm,bml->bcl', op.conv_h.weight[:, :, 0, 0], f[:, :, :h]) + op.conv_h.bias[:, None])
    a_w = sigmoid(torch.einsum('cm,bml->bcl', op.conv_w.weight[:, :, 0, 0], f[:, :, h:]) + op.conv_w.bias[:, None])
    return a_h[:, :, :, None] * a_w[:, :, None, :]


def coord(op, x):
    return x * coord_gate(op, x)


def psa_channel(op, x):
    """A^ch (B, C, 1, 1), with the (C/2, N) value map formed as the paper writes it."""
    flat = x.flatten(2)
    q = torch.einsum('oc,bcn->bon', op.ch_wq.weight[:, :, 0, 0], flat) + op.ch_wq.bias[:, None]   # (B, 1, N)
    v = torch.einsum('oc,bcn->bon', op.ch_wv.weight[:, :, 0, 0], flat) + op.ch_wv.bias[:, None]   # (B, C/2, N)
    z = (v * softmax(q, dim=2)).sum(dim=2)                                                      # over positions
    z = z @ op.ch_wz.weight[:, :, 0, 0].T + op.ch_wz.bias                                       # (B, C)
    mu = z.mean(dim=1, keepdim=True)
    var = ((z - mu) ** 2).mean(dim=1, keepdim=True)
    z = (z - mu) / torch.sqrt(var + op.ln.eps) * op.ln.weight + op.ln.bias                      # LN over C
    return sigmoid(z)[:, :, None, None]


def psa_spatial(op, x):
    """A^sp (B, 1, H, W)."""
    b, _, h, w = x.shape
    flat = x.flatten(2)
    q = torch.einsum('oc,bcn->bon', op.sp_wq.weight[:, :, 0, 0], flat) + op.sp_wq.bias[:, None]   # (B, C/2, N)
    v = torch.einsum('oc,bcn->bon', op.sp_wv.weight[:, :, 0, 0], flat) + op.sp_wv.bias[:, None]
    attn = softmax(q.mean(dim=2), dim=1)                                                          # over C/2
    return sigmoid((attn[:, :, None] * v).sum(dim=1)).view(b, 1, h, w)


def psa(op, x):
    a_ch = psa_channel(op, x)
    if op.mode == 'parallel':
        return a_ch * x + psa_spatial(op, x) * x
    refined = a_ch * x
    return psa_spatial(op, refined) * refined


def psa_gate(op, x):
    a_ch = psa_channel(op, x)
    if op.mode == 'parallel':
        return (a_ch + psa_spatial(op, x)).expand_as(x)
    return (a_ch * psa_spatial(op, a_ch * x)).expand_as(x)


CASES = [
    Case(dict(type='CBAM', dim=16, reduction=4), (2, 16, 5, 4), cbam, cbam_gate),
    Case(dict(type='CBAM', dim=8, reduction=2, kernel_size=3), (2, 8, 4, 1), cbam, cbam_gate, id='CBAM-k3-Nx1'),
    Case(dict(type='BAM', dim=16, reduction=4), (2, 16, 5, 6), bam, bam_gate),
    Case(dict(type='BAM', dim=8, reduction=2, dilation=2), (2, 8, 3, 1), bam, bam_gate, id='BAM-d2-Nx1'),
    Case(dict(type='SimAM', dim=8), (2, 8, 4, 5), simam, simam_gate),
    Case(dict(type='SimAM', dim=6, e_lambda=0.5), (2, 6, 6, 1), simam, simam_gate, id='SimAM-lambda-Nx1'),
    Case(dict(type='TripletAttention', dim=8), (2, 8, 4, 5), triplet, triplet_gate),
    Case(dict(type='TripletAttention', dim=6, kernel_size=3, no_spatial=True), (2, 6, 5, 3), triplet, triplet_gate,
         id='TripletAttention-k3-no-spatial'),
    Case(dict(type='CoordAttention', dim=16), (2, 16, 4, 5), coord, coord_gate),
    Case(dict(type='CoordAttention', dim=8, reduction=4), (2, 8, 6, 1), coord, coord_gate, id='CoordAttention-Nx1'),
    Case(dict(type='PolarizedSelfAttention', dim=8), (2, 8, 4, 5), psa, psa_gate),
    Case(dict(type='PolarizedSelfAttention', dim=9, mode='sequential'), (2, 9, 3, 4), psa, psa_gate,
         id='PolarizedSelfAttention-sequential-odd'),
    Case(dict(type='PolarizedSelfAttention', dim=8, mode='sequential'), (2, 8, 5, 1), psa, psa_gate,
         id='PolarizedSelfAttention-sequential-Nx1'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test(CASES)


# ----------------------------------------------------------------------------- the catalogue
test_catalogue = catalogue_test([
    # CBAM: the catalogue's output minus the input it adds (see the defect test below)
    PeerCase(dict(type='CBAM', dim=32), (2, 32, 6, 5)),
    PeerCase(dict(type='CBAM', dim=64, reduction=8, kernel_size=5), (2, 64, 7, 7)),
    # BAM: the catalogue rebuilt with the paper's layers (it only runs on 7 x 7 maps otherwise)
    PeerCase(dict(type='BAM', dim=32, reduction=4), (2, 32, 6, 5)),
    PeerCase(dict(type='BAM', dim=64), (4, 64, 9, 7), train=True, id='BAM-train'),
    PeerCase(dict(type='SimAM', dim=16), (2, 16, 5, 6)),
    PeerCase(dict(type='SimAM', dim=16, e_lambda=0.1), (2, 16, 2, 1)),
    PeerCase(dict(type='TripletAttention', dim=16), (2, 16, 5, 6)),
    PeerCase(dict(type='TripletAttention', dim=16, no_spatial=True), (3, 16, 6, 4), train=True,
             id='TripletAttention-no-spatial-train'),
    PeerCase(dict(type='CoordAttention', dim=32), (2, 32, 5, 6)),
    PeerCase(dict(type='CoordAttention', dim=64, reduction=4), (3, 64, 5, 6), train=True, id='CoordAttention-train'),
    PeerCase(dict(type='PolarizedSelfAttention', dim=32), (2, 32, 5, 6)),
    PeerCase(dict(type='PolarizedSelfAttention', dim=32, mode='sequential'), (2, 32, 5, 6)),
    PeerCase(dict(type='PolarizedSelfAttention', dim=15, mode='sequential'), (2, 15, 4, 3)),
    PeerCase(dict(type='PolarizedSelfAttention', dim=64), (2, 64, 16, 16), std=1.0, id='PSA-1024-positions'),
])


def _peer(cfg, fixed=True, std=0.3, train=False):
    from tools.peers.catalogue import build_peer
    op = build(cfg, torch.float32, train, std)
    return op, build_peer(op, fixed=fixed)


def test_catalogue_cbam_adds_its_input_defaults_to_a_49x49_kernel_and_fails_below_16_channels():
    pytest.importorskip('fightingcv_attention')
    from fightingcv_attention.attention.CBAM import CBAMBlock
    op, theirs = _peer(dict(type='CBAM', dim=32), fixed=False)
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        ours = op(x)
        torch.testing.assert_close(theirs(x), ours + x)                   # F'' + F: the input added again
        assert (theirs(x) - ours).abs().max() > 0.5
    assert CBAMBlock().sa.conv.kernel_size == (49, 49)
    assert ATTENTION.build(dict(type='CBAM', dim=32)).conv.kernel_size == (7, 7)
    with pytest.raises(RuntimeError, match='expected weight to be at least 1'):
        CBAMBlock(channel=8)(torch.randn(2, 8, 5, 5))                  # hidden width 8 // 16 = 0
    assert ATTENTION.build(dict(type='CBAM', dim=8)).fc1.out_features == 1


def test_catalogue_bam_runs_only_on_7x7_maps_where_its_spatial_gate_is_constant():
    pytest.importorskip('fightingcv_attention')
    from fightingcv_attention.attention.BAM import BAMBlock
    theirs = BAMBlock(channel=64).eval()
    dilated = [m for m in theirs.sa.sa if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert [(m.dilation, m.padding) for m in dilated] == [((2, 2), (1, 1))] * 3      # shrinks 2 per layer
    assert sum(isinstance(m, torch.nn.Linear) for m in theirs.ca.ca) == 4              # three hidden layers
    for hw, match in (((8, 8), 'expanded size'), ((14, 14), 'expanded size'), ((5, 5), "Kernel size can't")):
        with pytest.raises(RuntimeError, match=match):
            theirs(torch.randn(2, 64, *hw))
    x = torch.randn(2, 64, 7, 7)
    with torch.no_grad():
        spatial = theirs.sa(x)                                          # (2, 64, 7, 7) expanded from 1 x 1
        assert torch.all(spatial == spatial[:, :, :1, :1])

    ours = build(dict(type='BAM', dim=64))
    assert [m.dilation for m in ours.spatial if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)] == \
        [(4, 4)] * 2
    for hw in ((7, 7), (8, 8), (14, 14), (5, 5), (6, 1)):
        x = torch.randn(2, 64, *hw)
        with torch.no_grad():
            ms = ours.spatial(x)
            assert ms.shape == (2, 1, *hw) and ours(x).shape == x.shape
            if hw[0] * hw[1] > 1:
                assert ms.std(dim=(2, 3)).min() > 1e-3                  # varies over positions


def test_catalogue_simam_gives_nan_on_1x1_maps_and_ours_gates_by_sigmoid_half():
    pytest.importorskip('fightingcv_attention')
    from fightingcv_attention.attention.SimAM import SimAM as CatalogueSimAM
    x = torch.randn(2, 16, 1, 1, requires_grad=True)
    assert torch.isnan(CatalogueSimAM()(x)).all()
    ours = ATTENTION.build(dict(type='SimAM', dim=16))
    y = ours(x)
    torch.testing.assert_close(y, torch.sigmoid(torch.tensor(0.5)) * x)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- properties
RANGES = [
    (dict(type='CBAM', dim=16), 0.0, 1.0),
    (dict(type='BAM', dim=16), 1.0, 2.0),
    (dict(type='SimAM', dim=16), 1 / (1 + math.exp(-0.5)), 1.0),
    (dict(type='TripletAttention', dim=16), 0.0, 1.0),
    (dict(type='CoordAttention', dim=16), 0.0, 1.0),
    (dict(type='PolarizedSelfAttention', dim=16), 0.0, 2.0),
    (dict(type='PolarizedSelfAttention', dim=16, mode='sequential'), 0.0, 1.0),
]
RANGE_IDS = [c['type'] + ('-' + c['mode'] if 'mode' in c else '') for c, _, _ in RANGES]


@pytest.mark.parametrize('cfg,low,high', RANGES, ids=RANGE_IDS)
def test_gates_are_in_the_papers_range_and_shaped_as_the_input(cfg, low, high):
    op = build(cfg, torch.float64, std=0.5)
    x = torch.randn(3, 16, 5, 4, dtype=torch.float64) * 2
    with torch.no_grad():
        out, g = op(x, return_attn=True)
    assert g.shape == x.shape
    assert (g >= low).all() and (g < high).all()
    assert g.std() > 0.02, 'the gate varies over the input'
    torch.testing.assert_close(out, x * g)


def test_cbam_gate_is_a_channel_gate_times_a_spatial_gate():
    """g = M_c (per channel) * M_s (per position): g / g[..., 0, 0] is the same for every channel."""
    op = build(dict(type='CBAM', dim=16), torch.float64, std=1.0)
    with torch.no_grad():
        _, g = op(torch.randn(2, 16, 5, 4, dtype=torch.float64), return_attn=True)
    ratio = g / g[:, :, :1, :1]
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))


def test_coordinate_gate_factorises_over_h_and_w_and_swapping_them_transposes_the_output():
    op = build(dict(type='CoordAttention', dim=16), torch.float64, std=1.0)
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        _, g = op(x, return_attn=True)
        torch.testing.assert_close(g * g[:, :, :1, :1], g[:, :, :, :1] * g[:, :, :1, :])   # rank one per channel
        swapped = build(dict(type='CoordAttention', dim=16), torch.float64)
        swapped.load_state_dict(op.state_dict())
        swapped.conv_h.load_state_dict(op.conv_w.state_dict())
        swapped.conv_w.load_state_dict(op.conv_h.state_dict())
        torch.testing.assert_close(swapped(x.transpose(2, 3)), op(x).transpose(2, 3))


def test_simam_favours_distinctive_neurons_and_is_equivariant_to_permutations():
    """Within a channel the gate grows with (x - mu)^2 (Eq. 5); channels and positions are independent
    units, so permuting either permutes the output."""
    op = ATTENTION.build(dict(type='SimAM', dim=8)).double()
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    _, g = op(x, return_attn=True)
    dev = (x - x.mean(dim=(2, 3), keepdim=True)).square().flatten(2)
    order = dev.argsort(dim=-1)
    assert (g.flatten(2).gather(-1, order).diff(dim=-1) >= 0).all()
    channels, positions = torch.randperm(8), torch.randperm(20)
    permuted = x[:, channels].flatten(2)[:, :, positions].view_as(x)
    torch.testing.assert_close(op(permuted), op(x)[:, channels].flatten(2)[:, :, positions].view_as(x))


def test_cbam_is_equivariant_to_a_permutation_of_channels():
    """Channel descriptors go through one MLP; spatial descriptors pool over all channels: permuting the
    channels, with the MLP's weights permuted alike, permutes the output."""
    op = build(dict(type='CBAM', dim=16, reduction=4), torch.float64)
    perm = torch.randperm(16)
    permuted = build(dict(type='CBAM', dim=16, reduction=4), torch.float64)
    permuted.load_state_dict(op.state_dict())
    with torch.no_grad():
        permuted.fc1.weight.copy_(op.fc1.weight[:, perm])
        permuted.fc2.weight.copy_(op.fc2.weight[perm])
        x = torch.randn(2, 16, 5, 4, dtype=torch.float64)
        torch.testing.assert_close(permuted(x[:, perm]), op(x)[:, perm])


def test_paper_defaults():
    cbam_op = ATTENTION.build(dict(type='CBAM', dim=64))
    assert (cbam_op.fc1.out_features, cbam_op.conv.kernel_size) == (4, (7, 7))                      # r = 16, k = 7
    bam_op = ATTENTION.build(dict(type='BAM', dim=64))
    assert sum(isinstance(m, torch.nn.Linear) for m in bam_op.channel) == 2                         # one hidden layer
    convs = [m for m in bam_op.spatial if isinstance(m, torch.nn.Conv2d)]
    assert [(m.kernel_size, m.dilation, m.padding) for m in convs] == \
        [((1, 1), (1, 1), (0, 0)), ((3, 3), (4, 4), (4, 4)), ((3, 3), (4, 4), (4, 4)), ((1, 1), (1, 1), (0, 0))]
    assert convs[0].out_channels == 4                                                             # C / 16
    assert ATTENTION.build(dict(type='SimAM', dim=8)).e_lambda == 1e-4
    triplet_op = ATTENTION.build(dict(type='TripletAttention', dim=8))
    assert triplet_op.cw[0].kernel_size == (7, 7) and triplet_op.cw[1].momentum == 0.01
    assert ATTENTION.build(dict(type='CoordAttention', dim=64)).mid == 8                             # max(8, 64 / 32)
    assert ATTENTION.build(dict(type='CoordAttention', dim=512)).mid == 16
    assert ATTENTION.build(dict(type='PolarizedSelfAttention', dim=64)).mode == 'parallel'


@pytest.mark.parametrize('name', ['BAM', 'TripletAttention', 'CoordAttention'])
def test_ops_with_norms_take_norm_cfg(name):
    op = ATTENTION.build(dict(type=name, dim=16, norm_cfg=dict(type='SyncBN', requires_grad=True)))
    norms = [m for m in op.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    op = ATTENTION.build(dict(type=name, dim=16, norm_cfg=dict(type='LN')))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m in op.modules())
    assert op(torch.randn(2, 16, 4, 3)).shape == (2, 16, 4, 3)


@pytest.mark.parametrize('cfg,match', [
    (dict(type='CBAM', dim=16, reduction=0), 'CBAM: reduction must be a positive integer, got 0'),
    (dict(type='CBAM', dim=16, kernel_size=4), 'CBAM: kernel_size must be an odd positive integer'),
    (dict(type='BAM', dim=16, dilation=0), 'BAM: dilation must be a positive integer, got 0'),
    (dict(type='SimAM', dim=16, e_lambda=0.0), 'SimAM: e_lambda must be a positive number'),
    (dict(type='TripletAttention', dim=16, kernel_size=2), 'TripletAttention: kernel_size must be an odd'),
    (dict(type='CoordAttention', dim=16, reduction=-1), 'CoordAttention: reduction must be a positive integer'),
    (dict(type='PolarizedSelfAttention', dim=16, mode='both'),
     r"mode must be one of \('parallel', 'sequential'\), got 'both'"),
    (dict(type='PolarizedSelfAttention', dim=1), 'dim must be at least 2'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
