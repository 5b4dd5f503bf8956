"""Point ops against written-out references: FPS indices on every backend (ties, masks, ragged),
kNN / ball query against brute force and chunk-size invariant, the ragged kNN graph's edge_index
convention, densification against PyG, the native build's fallback and errors."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from attn_ops import native, point_ops as po


def reference_fps(pos, s, n_real=None):
    """The reference loop on one cloud (N, D): start at 0, then the point with the largest distance
    to the picked set, first index on ties; after the n_real real points, index 0 again."""
    n_real = pos.shape[0] if n_real is None else n_real
    real = pos[:n_real]
    out = [0]
    d = ((real - real[0]) ** 2).sum(-1)
    for _ in range(1, s):
        j = int(d.argmax())                   # torch.argmax: first index of the maximum
        out.append(j)
        d = torch.minimum(d, ((real - real[j]) ** 2).sum(-1))
    return torch.tensor(out)


def _cpu_backends():
    names = ['torch']
    try:
        native.load_library('fps', po._FPS_C)
        names.append('native')
    except native.NativeBuildError:
        pass
    return names


CPU_BACKENDS = _cpu_backends()


def _grid(side, batch=2):
    """Integer lattice clouds: many equal distances, so ties decide most picks."""
    g = torch.stack(torch.meshgrid(*[torch.arange(float(side))] * 3, indexing='ij'), -1).view(-1, 3)
    return g.unsqueeze(0).repeat(batch, 1, 1)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_fps_equals_reference_loop(backend, dtype):
    torch.manual_seed(0)
    for b, n, d, s in ((3, 200, 3, 64), (2, 37, 2, 37), (1, 5, 3, 9), (2, 64, 6, 1)):
        pos = (torch.randn(b, n, d) * 10).to(dtype)
        idx = po.farthest_point_sample(pos, s, backend=backend)
        assert idx.shape == (b, s) and idx.dtype == torch.long
        for i in range(b):
            assert torch.equal(idx[i], reference_fps(pos[i], s)), (b, n, d, s, i)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_fps_ties_and_duplicates_take_the_first_index(backend):
    grid = _grid(5)                                         # 125 points, ties everywhere
    dup = torch.randn(2, 40, 3).repeat(1, 3, 1)             # every point three times
    for pos, s in ((grid, 125), (dup, 60)):
        idx = po.farthest_point_sample(pos, s, backend=backend)
        for i in range(pos.shape[0]):
            assert torch.equal(idx[i], reference_fps(pos[i], s))
    assert len(set(po.farthest_point_sample(grid, 125, backend=backend)[0].tolist())) == 125


@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_fps_mask_never_picks_padding_and_repeats_first_when_exhausted(backend):
    torch.manual_seed(1)
    sizes = [50, 13, 1, 32]
    pos = torch.randn(len(sizes), 50, 3)
    mask = torch.arange(50) < torch.tensor(sizes).unsqueeze(1)
    pos[~mask] = 100.0                                       # far away: picked if padding counted
    idx = po.farthest_point_sample(pos, 20, mask, backend=backend)
    for i, n in enumerate(sizes):
        assert torch.equal(idx[i], reference_fps(pos[i], 20, n_real=n))
    assert (idx[1, 13:] == 0).all() and (idx[2] == 0).all()


def test_fps_backends_agree_on_pct_sizes():
    torch.manual_seed(2)
    pos = torch.rand(4, 1024, 3)
    ref = po.farthest_point_sample(pos, 512, backend='torch')
    for backend in CPU_BACKENDS:
        assert torch.equal(po.farthest_point_sample(pos, 512, backend=backend), ref)
    assert torch.equal(ref[0], reference_fps(pos[0], 512))


def test_fps_auto_uses_native_on_cpu_and_falls_back_without_a_compiler(monkeypatch, tmp_path):
    if 'native' not in CPU_BACKENDS:
        pytest.skip('no C compiler here')
    pos = torch.randn(2, 30, 3)
    assert po.fps_backend(pos) == 'native'
    assert po.fps_backend(pos.half()) == 'torch'
    monkeypatch.setenv('ATTN_OPS_CACHE', str(tmp_path))
    monkeypatch.setenv('CC', str(tmp_path / 'no-such-cc'))
    monkeypatch.setattr(po, '_backend_state', {})
    with pytest.warns(RuntimeWarning, match='native farthest point sampling is unavailable'):
        assert po.fps_backend(pos) == 'torch'
    idx = po.farthest_point_sample(pos, 10)
    assert all(torch.equal(idx[i], reference_fps(pos[i], 10)) for i in range(2))
    with pytest.raises(RuntimeError, match='native kernel could not be built'):
        po.farthest_point_sample(pos, 10, backend='native')


def test_native_build_caches_and_reports_compiler_errors(monkeypatch, tmp_path):
    if 'native' not in CPU_BACKENDS:
        pytest.skip('no C compiler here')
    monkeypatch.setenv('ATTN_OPS_CACHE', str(tmp_path))
    lib = native.load_library('fps', po._FPS_C)
    built = list(tmp_path.glob('fps-*.so'))
    assert len(built) == 1 and lib.fps_f32
    native.load_library('fps', po._FPS_C)                   # cached: no second build
    assert list(tmp_path.glob('*')) == built
    with pytest.raises(native.NativeBuildError, match=r'failed on broken\.c:\n.*error'):
        native.load_library('broken', 'int f( {')
    monkeypatch.setenv('ATTN_OPS_NATIVE', '0')
    with pytest.raises(native.NativeBuildError, match='ATTN_OPS_NATIVE=0'):
        native.load_library('fps', po._FPS_C)


def test_triton_kernel_in_interpreter_mode():
    """The GPU kernel's logic, run by Triton's CPU interpreter (where triton is installed)."""
    pytest.importorskip('triton')
    code = textwrap.dedent('''
        import torch
        from attn_ops.fps_triton import farthest_point_sample_triton as fps
        from attn_ops.point_ops import farthest_point_sample
        torch.manual_seed(0)
        pos = torch.randn(3, 70, 3)
        mask = torch.arange(70) < torch.tensor([[70], [9], [40]])
        grid = torch.stack(torch.meshgrid(*[torch.arange(4.)] * 3, indexing='ij'), -1).view(1, -1, 3)
        for p, s, m in ((pos, 30, None), (pos, 30, mask), (pos.double(), 70, None), (grid, 64, None)):
            assert torch.equal(fps(p, s, m), farthest_point_sample(p, s, m, backend='torch'))
        print('ok')
    ''')
    env = dict(os.environ, TRITON_INTERPRET='1')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and 'ok' in proc.stdout, proc.stderr[-3000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_fps_cuda_equals_cpu():
    torch.manual_seed(3)
    pos = torch.randn(8, 1024, 3)
    mask = torch.arange(1024) < torch.randint(1, 1025, (8, 1))
    for m in (None, mask):
        want = po.farthest_point_sample(pos, 512, m)
        got = po.farthest_point_sample(pos.cuda(), 512, None if m is None else m.cuda())
        assert torch.equal(got.cpu(), want), po.fps_backend(pos.cuda())


def test_knn_matches_brute_force_and_chunking(monkeypatch):
    torch.manual_seed(1)
    q, r = torch.randn(2, 50, 3), torch.randn(2, 70, 3)
    d = ((q.unsqueeze(2) - r.unsqueeze(1)) ** 2).sum(-1)
    want = d.argsort(-1)[..., :5]
    assert torch.equal(po.knn(q, r, 5), want)
    sizes = []
    square_distance = po.square_distance
    monkeypatch.setattr(po, 'square_distance', lambda a, b: sizes.append(a.shape[1] * b.shape[1] * a.shape[0])
                        or square_distance(a, b))
    monkeypatch.setattr(po, 'CHUNK_ELEMENTS', 70 * 2 * 3)  # 3 queries per chunk
    idx, dist = po.knn(q, r, 5, return_dist=True)
    assert torch.equal(idx, want)
    assert torch.equal(dist, d.gather(-1, want))           # the same bits as the brute force
    assert len(sizes) == 17 and max(sizes) <= 70 * 2 * 3


def test_knn_distances_are_differentiable():
    q = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    r = torch.randn(1, 9, 3, dtype=torch.float64)
    idx, dist = po.knn(q, r, 3, return_dist=True)
    dist.sum().backward()
    want = 2 * (q.detach().unsqueeze(2) - po.gather_points(r, idx)).sum(2)
    torch.testing.assert_close(q.grad, want)


def test_knn_mask_and_too_few_points():
    r = torch.tensor([[[0., 0, 0], [1, 0, 0], [5, 0, 0]]])
    mask = torch.tensor([[True, True, False]])
    idx = po.knn(torch.zeros(1, 1, 3), r, 3, ref_mask=mask)
    assert idx.tolist() == [[[0, 1, 0]]]  # padding never returned; missing slots repeat nearest
    assert po.knn(torch.zeros(1, 2, 3), r, 5).tolist() == [[[0, 1, 2, 0, 0]] * 2]


def test_ball_query_first_k_in_index_order(monkeypatch):
    torch.manual_seed(2)
    q, r = torch.rand(2, 20, 3), torch.rand(2, 60, 3)
    d = ((q.unsqueeze(2) - r.unsqueeze(1)) ** 2).sum(-1)
    want = torch.empty(2, 20, 8, dtype=torch.long)
    for b in range(2):
        for i in range(20):
            hits = torch.nonzero(d[b, i] < 0.3 ** 2).flatten()[:8].tolist()
            want[b, i] = torch.tensor(hits + [hits[0] if hits else 0] * (8 - len(hits)))
    assert torch.equal(po.ball_query(q, r, 0.3, 8), want)
    monkeypatch.setattr(po, 'CHUNK_ELEMENTS', 60 * 2 * 7)
    assert torch.equal(po.ball_query(q, r, 0.3, 8), want)
    mask = torch.ones(2, 60, dtype=torch.bool)
    mask[:, 1::2] = False
    assert (po.ball_query(q, r, 0.5, 70, ref_mask=mask) % 2 == 0).all()   # k > N, padding never


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


def _ragged(sizes=(30, 17, 25, 2)):
    torch.manual_seed(3)
    pos = torch.randn(sum(sizes), 3)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, batch, list(sizes)


def test_to_dense_equals_pyg():
    from torch_geometric.utils import to_dense_batch
    pos, batch, _ = _ragged()
    feat = torch.randn(pos.shape[0], 5)
    for b in (batch, None):
        dense, mask = po.to_dense(feat, b)
        want, want_mask = to_dense_batch(feat, b)
        assert torch.equal(dense, want) and torch.equal(mask, want_mask)
    dense, mask = po.to_dense(feat, batch, num_clouds=6)     # trailing empty clouds
    assert dense.shape == (6, 30, 5) and not mask[4:].any()
    with pytest.raises(ValueError, match='batch must be sorted'):
        po.to_dense(feat, batch.flip(0))


def test_ragged_fps_equals_per_cloud(monkeypatch):
    monkeypatch.setattr(po, 'torch_cluster', None)
    pos, batch, sizes = _ragged()
    idx = po.fps(pos, batch, ratio=0.25)
    start, want = 0, []
    for n in sizes:
        want.append(reference_fps(pos[start:start + n], -(-n // 4)) + start)
        start += n
    assert torch.equal(idx, torch.cat(want))


def test_ragged_knn_is_an_edge_index_within_each_cloud(monkeypatch):
    monkeypatch.setattr(po, 'torch_cluster', None)
    pos, batch, sizes = _ragged()
    source, target = po.knn_ragged(pos, pos, 4, batch, batch)
    assert (batch[source] == batch[target]).all()
    # 4 neighbours per centre, but the 2-point cloud has only 2
    assert torch.bincount(target).tolist() == [4] * (pos.shape[0] - 2) + [2, 2]
    d = ((pos[:, None] - pos[None]) ** 2).sum(-1).masked_fill(batch[:, None] != batch[None], float('inf'))
    order = d.argsort(-1)
    assert torch.equal(source[:-4].view(-1, 4), order[:-2, :4])     # sorted by distance
    assert torch.equal(source[-4:].view(2, 2), order[-2:, :2])
    assert torch.equal(target, torch.sort(target).values) and torch.equal(source[::4][:5], torch.arange(5))
    # centres from FPS, neighbours from the full clouds: target indexes y, source indexes x
    centres = po.fps(pos, batch, 0.5)
    source, target = po.knn_ragged(pos, pos[centres], 3, batch, batch[centres])
    for i, c in enumerate(centres.tolist()):
        got = source[target == i]
        assert torch.equal(got, order[c, :min(3, sizes[batch[c]])]) and got[0] == c  # nearest: itself


def test_ragged_knn_feeds_pyg_point_transformer_conv(monkeypatch):
    """PyG reads edge_index[0] as the source (neighbour j) and edge_index[1] as the target (centre i)."""
    from torch_geometric.nn import PointTransformerConv
    monkeypatch.setattr(po, 'torch_cluster', None)
    pos, batch, _ = _ragged()
    edge_index = po.knn_ragged(pos, pos, 4, batch, batch)
    conv = PointTransformerConv(8, 8, add_self_loops=False)
    x = torch.randn(pos.shape[0], 8)
    out = conv(x, pos, edge_index)
    # moving a point of cloud 0 changes cloud 0's outputs only
    pos2 = pos.clone()
    pos2[0] += 0.1
    moved = (conv(x, pos2, edge_index) - out).abs().sum(-1) > 0
    assert moved[batch == 0].any() and not moved[batch != 0].any()


def test_torch_cluster_path_agrees():
    tc = pytest.importorskip('torch_cluster')
    pos, batch, _ = _ragged()
    a = po.knn_ragged(pos, pos, 4, batch, batch)
    f = po.fps(pos, batch, 0.25)
    saved, po.torch_cluster = po.torch_cluster, None
    try:
        b = po.knn_ragged(pos, pos, 4, batch, batch)
        g = po.fps(pos, batch, 0.25)
    finally:
        po.torch_cluster = saved
    assert torch.equal(f, g) and torch.equal(tc.fps(pos, batch, ratio=0.25, random_start=False), g)
    assert set(zip(*a.tolist())) == set(zip(*b.tolist()))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r'dense pos of shape \(B, N, D\), got \(5, 3\)'):
        po.farthest_point_sample(torch.randn(5, 3), 2)
    with pytest.raises(ValueError, match='num_samples must be >= 1, got 0'):
        po.farthest_point_sample(torch.randn(1, 5, 3), 0)
    with pytest.raises(ValueError, match="backend must be one of .* got 'cuda'"):
        po.farthest_point_sample(torch.randn(1, 5, 3), 2, backend='cuda')
    with pytest.raises(ValueError, match='bool mask'):
        po.knn(torch.randn(1, 2, 3), torch.randn(1, 4, 3), 2, ref_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match='ratio'):
        po.fps(torch.randn(4, 3), None, 1.5)
    with pytest.raises(ValueError, match=r'one cloud id per point, shape \(4,\), got \(3\)'):
        po.fps(torch.randn(4, 3), torch.zeros(3, dtype=torch.long))


def test_point_ops_import_no_point_cloud_or_gpu_library():
    code = ('import sys, attn_ops.point_ops; '
            'print(sorted(m for m in ("torch_geometric", "torch_cluster", "triton", "mmseg", "open3d") if m in sys.modules))')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == '[]', proc.stderr[-2000:]
