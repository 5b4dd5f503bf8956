"""Point Transformer vector attention: the paper's formula written out with loops over the points and
their k nearest neighbours, ragged batches against clouds one by one, the kNN graph within clouds,
positions (required, padded to pos_dim, handed over by the PCT layers and the layout adapter)."""
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from attn_ops import ATTENTION, as_layout
from attn_ops.layouts import grid_positions, map_to_tokens, masked_apply
from attn_ops.point_ops import to_dense
from tests.ops.common import Case, build, formula_test, gradcheck_test, lengths_mask, linear, softmax

NAME = 'PointTransformerAttention'


def _mlp(t, seq):
    """Linear -> ReLU -> Linear written out (theta and gamma)."""
    return linear(torch.relu(linear(t, seq[0])), seq[2])


def _neighbours(p, k):
    """The min(k, n) nearest points of every point of one cloud (n, D), itself first: (n, k)."""
    d = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    return d.argsort(dim=1)[:, :min(k, p.shape[0])]


def _layer(op, x, pos, mask=None):
    """Paper Eq. 3, cloud by cloud, point by point, neighbour by neighbour: the output (B, N, C) and
    the weights (B, C, N, N) (weight of point j in point i's output, per channel)."""
    conv = op.conv
    b, n, c = x.shape
    pos = F.pad(pos, (0, op.pos_dim - pos.shape[-1])).to(x.dtype)
    phi, psi, alpha = linear(x, conv.lin_dst), linear(x, conv.lin_src), linear(x, conv.lin)
    rows = [[torch.zeros(c, dtype=x.dtype)] * n for _ in range(b)]
    weights = torch.zeros(b, c, n, n, dtype=x.dtype)
    for s in range(b):
        real = torch.arange(n) if mask is None else mask[s].nonzero().flatten()
        nbrs = _neighbours(pos[s, real], op.k)
        for i, nb in enumerate(nbrs):
            ti, logits, values = real[i], [], []
            for j in nb:
                tj = real[j]
                delta = _mlp(pos[s, ti] - pos[s, tj], conv.pos_nn)
                logits.append(_mlp(phi[s, ti] - psi[s, tj] + delta, conv.attn_nn))
                values.append(alpha[s, tj] + delta)
            a = softmax(torch.stack(logits), dim=0)                 # over the neighbours, per channel
            rows[s][ti] = (a * torch.stack(values)).sum(0)
            weights[s, :, ti, real[nb]] = a.detach().T
    return torch.stack([torch.stack(r) for r in rows]), weights


def _positions(b, n, d=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, n, d, generator=g, dtype=torch.float64)


CASES = [
    Case(dict(type=NAME, dim=8, k=4), (2, 7, 8), lambda op, x, **kw: _layer(op, x, **kw)[0],
         lambda op, x, **kw: _layer(op, x, **kw)[1], call=dict(pos=_positions(2, 7)), id='k4'),
    Case(dict(type=NAME, dim=8, k=4), (2, 7, 8), lambda op, x, **kw: _layer(op, x, **kw)[0],
         lambda op, x, **kw: _layer(op, x, **kw)[1], lengths=[7, 3], call=dict(pos=_positions(2, 7)),
         id='k4-ragged'),       # the second cloud has fewer points than k: all of them
    Case(dict(type=NAME, dim=6, k=5, pos_hidden=4, attn_hidden=3), (1, 9, 6),
         lambda op, x, **kw: _layer(op, x, **kw)[0], call=dict(pos=_positions(1, 9, 2)),
         id='2d-positions-hidden-widths'),
]

test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test(CASES[:2])


def test_pyg_layer_is_the_papers():
    """The op's sub-modules are PyG's PointTransformerConv with the paper's MLPs for theta and gamma
    (two linear layers, one ReLU; theta's hidden width the official 3)."""
    from torch_geometric.nn import PointTransformerConv
    op = ATTENTION.build(dict(type=NAME, dim=32))
    assert isinstance(op.conv, PointTransformerConv) and op.k == 16 and not op.conv.add_self_loops
    assert [type(m).__name__ for m in op.conv.pos_nn] == ['Linear', 'ReLU', 'Linear']
    assert (op.conv.pos_nn[0].in_features, op.conv.pos_nn[0].out_features, op.conv.pos_nn[2].out_features) == (3, 3, 32)
    assert [type(m).__name__ for m in op.conv.attn_nn] == ['Linear', 'ReLU', 'Linear']
    assert op.conv.attn_nn[2].out_features == 32      # vector attention: one weight per channel


# ----------------------------------------------------------------------------- ragged batches
def _ragged(sizes, c=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), c, generator=g)
    pos = torch.rand(sum(sizes), 3, generator=g)
    batch = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    return x, pos, batch


def test_ragged_batch_equals_clouds_one_by_one_and_the_dense_path():
    op = build(dict(type=NAME, dim=8, k=6))
    sizes = [9, 4, 12]
    x, pos, batch = _ragged(sizes)
    together = op.forward_ragged(x, pos, batch)
    alone = torch.cat([op.forward_ragged(xs, ps) for xs, ps in zip(x.split(sizes), pos.split(sizes))])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    (xd, mask), (pd, _) = to_dense(x, batch), to_dense(pos, batch)
    torch.testing.assert_close(op(xd, pos=pd, mask=mask)[mask], together, rtol=1e-5, atol=1e-6)


def test_knn_never_crosses_clouds():
    """Cloud 1 sits on cloud 0's points (shifted by 1e-4, so each of its points is the nearest other
    point of one of cloud 0's) and carries marker features: no edge joins them and cloud 0's
    outputs do not move when the marker changes."""
    op = build(dict(type=NAME, dim=8, k=4))
    x0, p0, _ = _ragged([10])
    pos = torch.cat([p0, p0 + 1e-4])
    batch = torch.tensor([0] * 10 + [1] * 10)
    outs = []
    for marker in (0.0, 1e3):
        x = torch.cat([x0, torch.full_like(x0, marker)])
        out, _, edges = op.forward_ragged(x, pos, batch, return_attn=True)
        assert torch.equal(batch[edges[0]], batch[edges[1]]), 'an edge joins two clouds'
        outs.append(out[:10])
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], op.forward_ragged(x0, p0))


def test_every_point_attends_to_itself_and_its_k_nearest():
    op = build(dict(type=NAME, dim=8, k=5))
    _, pos, batch = _ragged([9, 3])
    src, dst = op.graph(pos, batch)
    for i in range(12):
        nb = set(src[dst == i].tolist())
        cloud = torch.arange(9) if i < 9 else torch.arange(9, 12)
        want = cloud[_neighbours(pos[cloud], 5)[(cloud == i).nonzero().item()]]
        assert nb == set(want.tolist()) and i in nb
    dup = torch.cat([pos[:9], pos[:1]])              # a duplicate of point 0: self stays in, k + 1 at most
    src, dst = op.graph(dup)
    for i in (0, 9):
        nb = src[dst == i].tolist()
        assert i in nb and len(nb) in (5, 6) and len(set(nb)) == len(nb)


# ----------------------------------------------------------------------------- padding
def test_padded_tokens_next_to_real_points_change_nothing():
    """Padded tokens placed right beside the real points (they would be their nearest neighbours)
    with huge features: real outputs equal the unpadded cloud's, padded outputs are zero."""
    op = build(dict(type=NAME, dim=8, k=4))
    x, pos, _ = _ragged([6])
    xp = torch.cat([x, torch.full((4, 8), 1e4)])[None]
    pp = torch.cat([pos, pos[:4] + 1e-5])[None]
    mask = lengths_mask([6], 10)
    y = op(xp, pos=pp, mask=mask)
    torch.testing.assert_close(y[0, :6], op(x[None], pos=pos[None])[0])
    assert torch.all(y[0, 6:] == 0)


def test_all_padding_gives_zeros_and_finite_gradients():
    op = build(dict(type=NAME, dim=8), train=True)
    x = torch.randn(2, 5, 8, requires_grad=True)
    y = op(x, pos=torch.rand(2, 5, 3), mask=torch.zeros(2, 5, dtype=torch.bool))
    assert torch.all(y == 0)
    y.sum().backward()
    assert torch.all(x.grad == 0)
    out, w = op(x, pos=torch.rand(2, 5, 3), mask=torch.zeros(2, 5, dtype=torch.bool), return_attn=True)
    assert torch.all(out == 0) and torch.all(w == 0) and w.shape == (2, 8, 5, 5)


# ----------------------------------------------------------------------------- errors, config
def test_missing_or_misshaped_positions_are_named():
    op = ATTENTION.build(dict(type=NAME, dim=8))
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r'^PointTransformerAttention needs the point positions: call it as '
                                         r'op\(x, pos=pos\) with pos \(B, N, D\) = \(2, 5\) x D, 1 <= D <= 3'):
        op(x)
    for bad in (torch.rand(2, 4, 3), torch.rand(2, 5, 4), torch.rand(5, 3), torch.rand(2, 5, 0)):
        with pytest.raises(ValueError, match=r'expects pos of shape \(B, N, D\) = \(2, 5\) x D \(the points of x '
                                             r'\(2, 5, 8\)\), 1 <= D <= pos_dim=3, got \(' + ', '.join(map(str, bad.shape))):
            op(x, pos=bad)
    with pytest.raises(ValueError, match=r'forward_ragged expects x of shape \(P, C\) with C=8, got \(2, 5, 8\)'):
        op.forward_ragged(x, torch.rand(2, 5, 3))
    with pytest.raises(ValueError, match=r'expects pos of shape \(P, D\) = \(5,\) x D'):
        op.forward_ragged(x[0], torch.rand(4, 3))


def test_missing_torch_geometric_is_named_with_its_pin(monkeypatch):
    monkeypatch.setitem(sys.modules, 'torch_geometric', None)
    monkeypatch.setitem(sys.modules, 'torch_geometric.nn', None)
    with pytest.raises(ImportError, match=r'pip install torch-geometric==2\.7\.0'):
        ATTENTION.build(dict(type=NAME, dim=8))


def test_config_round_trip(tmp_path):
    cfg = dict(type=NAME, dim=8, k=5, pos_dim=2, pos_hidden=4)
    Config(dict(attn=cfg)).dump(str(tmp_path / 'op.py'))
    loaded = Config.fromfile(str(tmp_path / 'op.py')).attn.to_dict()
    assert loaded == cfg
    op, op2 = ATTENTION.build(cfg), ATTENTION.build(loaded)
    op2.load_state_dict(op.state_dict())
    x, pos = torch.randn(1, 7, 8), torch.rand(1, 7, 2)
    torch.testing.assert_close(op2(x, pos=pos), op(x, pos=pos))


# ----------------------------------------------------------------------------- positions handed over
def test_layout_adapter_hands_pixel_rows_and_columns():
    """On a map the adapter gives pos = (row, col): with k = 9 every inner pixel attends to exactly
    its 3 x 3 window."""
    op = build(dict(type=NAME, dim=8, k=9))
    x = torch.randn(1, 8, 5, 6)
    y, w = as_layout(op, 'map')(x, return_attn=True)
    tokens = map_to_tokens(x)
    torch.testing.assert_close(y, op(tokens, pos=grid_positions((5, 6))).transpose(1, 2).reshape(1, 8, 5, 6))
    torch.testing.assert_close(grid_positions((2, 3))[0], torch.tensor([[0., 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]))
    inner = (2 * 6 + 3)                                     # pixel (2, 3)
    window = {r * 6 + c for r in (1, 2, 3) for c in (2, 3, 4)}
    assert set((w[0, 0, inner] > 0).nonzero().flatten().tolist()) == window


def test_pct_layers_get_the_positions_of_their_points():
    """Inside PCT the attention layers see the points left after the neighbour-embedding stages (FPS)."""
    from projects.pointcloud.models import PCTClassifier
    from torch_geometric.data import Batch, Data
    model = PCTClassifier(num_classes=3, embed_channels=(16, 16), neighbor_stages=((16, 4, 32), (8, 4, 32)),
                          num_layers=2, encoder_mlp=(32, 32), fuse_channels=32, head_channels=(16,),
                          attn=dict(type=NAME, k=4)).eval()
    g = torch.Generator().manual_seed(0)
    batch = Batch.from_data_list([Data(pos=torch.rand(n, 3, generator=g)) for n in (24, 20)])
    seen = []
    for layer in model.encoder.layers:
        layer.attn.register_forward_pre_hook(lambda m, a, kw: seen.append((kw['pos'], kw['mask'])), with_kwargs=True)
    with torch.no_grad():
        model.logits(batch)
        pos, feat, mask = model.dense_inputs(batch)
        x = masked_apply(model.embedding, feat, mask)
        for stage in model.neighbor_embedding:
            pos, x, mask = stage(pos, x, mask)
    assert len(seen) == 2
    for got_pos, got_mask in seen:
        assert torch.equal(got_pos, pos) and got_pos.shape == (2, 8, 3)
        assert (got_mask is None and mask is None) or torch.equal(got_mask, mask)
