"""Point ops against brute force, FPS determinism, ragged == dense, optional torch-cluster parity."""
import pytest
import torch

from projects.pointcloud import point_ops as po


def brute_fps(pos, s):
    out = [0]
    d = ((pos - pos[0]) ** 2).sum(-1)
    for _ in range(1, s):
        j = int(d.argmax())
        out.append(j)
        d = torch.minimum(d, ((pos - pos[j]) ** 2).sum(-1))
    return torch.tensor(out)


def test_fps_matches_brute_force_and_is_deterministic():
    torch.manual_seed(0)
    pos = torch.randn(3, 200, 3)
    idx = po.farthest_point_sample(pos, 32)
    assert idx.shape == (3, 32)
    assert (idx[:, 0] == 0).all()
    for b in range(3):
        assert torch.equal(idx[b], brute_fps(pos[b], 32))
    assert torch.equal(idx, po.farthest_point_sample(pos, 32))
    assert len(set(idx[0].tolist())) == 32  # no repeats while points remain


def test_fps_mask_never_picks_padding_and_repeats_first_when_exhausted():
    pos = torch.randn(2, 10, 3)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 4:] = False
    pos[1, 4:] = 100.0  # far away: would be picked if padding were considered
    idx = po.farthest_point_sample(pos, 6, mask)
    assert (idx[1] < 4).all()
    assert sorted(idx[1, :4].tolist()) == [0, 1, 2, 3] and (idx[1, 4:] == 0).all()


def test_knn_matches_brute_force_and_chunking(monkeypatch):
    torch.manual_seed(1)
    q, r = torch.randn(2, 50, 3), torch.randn(2, 70, 3)
    d = torch.cdist(q, r)
    want = d.argsort(-1)[..., :5]
    assert torch.equal(po.knn(q, r, 5), want)
    monkeypatch.setattr(po, 'CHUNK_ELEMENTS', 70 * 2 * 3)  # 3 queries per chunk
    idx, dist = po.knn(q, r, 5, return_dist=True)
    assert torch.equal(idx, want)
    torch.testing.assert_close(dist, d.gather(-1, want) ** 2, rtol=1e-5, atol=1e-6)


def test_knn_mask_and_too_few_points():
    r = torch.tensor([[[0., 0, 0], [1, 0, 0], [5, 0, 0]]])
    mask = torch.tensor([[True, True, False]])
    idx = po.knn(torch.zeros(1, 1, 3), r, 3, ref_mask=mask)
    assert idx.tolist() == [[[0, 1, 0]]]  # padding never returned; missing slots repeat nearest


def test_ball_query_first_k_in_index_order():
    torch.manual_seed(2)
    q, r = torch.rand(2, 20, 3), torch.rand(2, 60, 3)
    idx = po.ball_query(q, r, 0.3, 8)
    d = torch.cdist(q, r)
    for b in range(2):
        for i in range(20):
            hits = torch.nonzero(d[b, i] < 0.3).flatten()[:8].tolist()
            exp = hits + [hits[0] if hits else 0] * (8 - len(hits))
            assert idx[b, i].tolist() == exp


def test_group_and_gather():
    feat = torch.arange(12.).view(1, 4, 3)
    centre = torch.tensor([[1]])
    nb = torch.tensor([[[2, 3]]])
    g = po.group_points(feat, centre, nb)
    assert g.shape == (1, 1, 2, 6)
    assert g[0, 0, 0].tolist() == [3., 3, 3, 3, 4, 5]
    with pytest.raises(ValueError, match=r'x \(B, N, C\)'):
        po.gather_points(feat[0], centre)


def test_knn_interpolate_inverse_distance():
    src = torch.tensor([[[0., 0, 0], [2, 0, 0], [10, 0, 0], [0, 3, 0]]])
    x = torch.tensor([[[1.], [2.], [3.], [4.]]])
    dst = torch.tensor([[[1., 0, 0]]])
    w = torch.tensor([1 / 1., 1 / 1., 1 / 10.])  # squared distances 1, 1, 10 (point (0,3,0))
    want = (w * torch.tensor([1., 2., 4.])).sum() / w.sum()
    out = po.knn_interpolate(x, src, dst, k=3)
    torch.testing.assert_close(out.view(()), want)
    # an exact hit returns that point's feature
    torch.testing.assert_close(po.knn_interpolate(x, src, src[:, :1], k=3).view(()), torch.tensor(1.))


def _ragged():
    torch.manual_seed(3)
    sizes = [30, 17, 25]
    pos = torch.randn(sum(sizes), 3)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    return pos, batch, sizes


def test_ragged_fps_equals_per_cloud(monkeypatch):
    monkeypatch.setattr(po, 'torch_cluster', None)
    pos, batch, sizes = _ragged()
    idx = po.fps(pos, batch, ratio=0.25)
    start, want = 0, []
    for n in sizes:
        want.append(brute_fps(pos[start:start + n], po.num_fps_samples(n, 0.25)) + start)
        start += n
    assert torch.equal(idx, torch.cat(want))


def test_ragged_knn_and_radius_stay_in_cloud(monkeypatch):
    monkeypatch.setattr(po, 'torch_cluster', None)
    pos, batch, sizes = _ragged()
    row, col = po.knn_ragged(pos, pos, 4, batch, batch)
    assert (batch[row] == batch[col]).all()
    assert torch.bincount(row).tolist() == [4] * pos.shape[0]
    d = torch.cdist(pos, pos).masked_fill(batch[:, None] != batch[None], float('inf'))
    assert torch.equal(col.view(-1, 4), d.argsort(-1)[:, :4])
    row, col = po.radius_ragged(pos, pos, 0.8, batch, batch, max_num_neighbors=64)
    want = {(i, j) for i, j in torch.nonzero(d < 0.8).tolist()}
    assert set(zip(row.tolist(), col.tolist())) == want


def test_torch_cluster_path_agrees():
    tc = pytest.importorskip('torch_cluster')
    pos, batch, _ = _ragged()
    a = tc.knn(pos, pos, 4, batch, batch)
    saved, po.torch_cluster = po.torch_cluster, None
    try:
        b = po.knn_ragged(pos, pos, 4, batch, batch)
        f = po.fps(pos, batch, 0.25)
    finally:
        po.torch_cluster = saved
    assert torch.equal(tc.fps(pos, batch, ratio=0.25, random_start=False), f)
    assert set(zip(*a.tolist())) == set(zip(*b.tolist()))


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r'dense pos of shape \(B, N, D\), got \(5, 3\)'):
        po.farthest_point_sample(torch.randn(5, 3), 2)
    with pytest.raises(ValueError, match='bool mask'):
        po.knn(torch.randn(1, 2, 3), torch.randn(1, 4, 3), 2, ref_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match='ratio'):
        po.fps(torch.randn(4, 3), None, 1.5)
