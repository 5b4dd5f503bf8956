import os.path as osp

import numpy as np
import pytest
from PIL import Image

from projects.pointcloud.visualization import (IGNORE_COLOR, RIGHT_COLOR, WRONG_COLOR, MatplotlibRenderer,
                                               class_palette, colorize, error_colors, frame_camera,
                                               visualize_sample, write_ply)

W, H = 160, 120


def _renderers(open3d_renderer):
    return [open3d_renderer, MatplotlibRenderer(point_size=4)]


def _background_fraction(img):
    return float((img == 255).all(-1).mean())


def test_render_nonblank_expected_size_and_labels_matter(open3d_renderer, two_blobs):
    pts, labels = two_blobs
    pal = class_palette(2)
    cam = frame_camera(pts, W, H)
    for r in _renderers(open3d_renderer):
        a = r.render(pts, colorize(labels, pal), cam)
        b = r.render(pts, colorize(1 - labels, pal), cam)
        again = r.render(pts, colorize(labels, pal), cam)
        assert a.shape == (H, W, 3) and a.dtype == np.uint8, r.name
        assert 0.5 < _background_fraction(a) < 0.995, r.name  # points drawn, background kept
        assert (a != b).any(-1).mean() > 0.01, r.name  # other labels, other picture
        np.testing.assert_array_equal(a, again)  # deterministic
        # the class colours show up in the image
        for c in pal:
            assert (np.abs(a.astype(int) - c).sum(-1) < 12).sum() > 10, (r.name, c)


def test_both_renderers_use_the_same_camera(open3d_renderer, two_blobs):
    pts, labels = two_blobs
    cam = frame_camera(pts, W, H)
    uv, depth = cam.project(pts)
    assert (depth > 0).all()
    assert (uv >= 0).all() and (uv[:, 0] < W).all() and (uv[:, 1] < H).all()  # the cloud is framed
    colors = np.zeros((len(pts), 3), np.uint8)
    for r in _renderers(open3d_renderer):
        img = r.render(pts, colors, cam)
        ys, xs = np.nonzero((img < 128).all(-1))
        # drawn pixels cover the projected points' bounding box (point size 4 px -> +-2 px)
        assert abs(xs.min() - uv[:, 0].min()) <= 3 and abs(xs.max() - uv[:, 0].max()) <= 3, r.name
        assert abs(ys.min() - uv[:, 1].min()) <= 3 and abs(ys.max() - uv[:, 1].max()) <= 3, r.name


def test_error_colors_and_palette():
    gt = np.array([0, 1, 2, 255, 1])
    pred = np.array([0, 2, 2, 0, 1])
    cols, acc = error_colors(gt, pred, num_classes=3)
    assert acc == pytest.approx(3 / 4)  # 255 is ignored
    assert [tuple(c) for c in cols] == [RIGHT_COLOR, WRONG_COLOR, RIGHT_COLOR, IGNORE_COLOR, RIGHT_COLOR]
    pal = class_palette(50)
    assert pal.shape == (50, 3) and len({tuple(c) for c in pal}) == 50
    assert (class_palette(2, palette=[[1, 2, 3], [4, 5, 6]]) == [[1, 2, 3], [4, 5, 6]]).all()
    assert tuple(colorize(np.array([-1]), pal)[0]) == IGNORE_COLOR
    with pytest.raises(ValueError, match='3 labels but prediction has 2'):
        error_colors(np.zeros(3), np.zeros(2), 2)


def _parse_ply(path):
    """A small PLY reader written for the test (binary little-endian and ascii vertex elements)."""
    types = {'float': '<f4', 'float32': '<f4', 'double': '<f8', 'uchar': 'u1', 'uint8': 'u1',
             'int': '<i4', 'int32': '<i4', 'short': '<i2', 'ushort': '<u2', 'uint': '<u4', 'char': 'i1'}
    with open(path, 'rb') as f:
        assert f.readline().strip() == b'ply'
        fmt, count, props = None, 0, []
        while True:
            words = f.readline().decode('ascii').split()
            if words[0] == 'format':
                fmt = words[1]
            elif words[0] == 'element':
                assert words[1] == 'vertex'
                count = int(words[2])
            elif words[0] == 'property':
                props.append((words[2], types[words[1]]))
            elif words[0] == 'end_header':
                break
        if fmt == 'ascii':
            return np.loadtxt(f, ndmin=2)
        return np.frombuffer(f.read(), dtype=props, count=count)


def test_ply_round_trip(tmp_path, two_blobs):
    from projects.compat.open3d import import_open3d
    pts, labels = two_blobs
    colors = colorize(labels, class_palette(2))
    path = write_ply(str(tmp_path / 'cloud.ply'), pts, colors, labels)

    rec = _parse_ply(path)
    np.testing.assert_array_equal(np.stack([rec['x'], rec['y'], rec['z']], 1), pts)
    np.testing.assert_array_equal(np.stack([rec['red'], rec['green'], rec['blue']], 1), colors)
    np.testing.assert_array_equal(rec['label'], labels)

    o3d = import_open3d()
    cloud = o3d.io.read_point_cloud(path)
    np.testing.assert_allclose(np.asarray(cloud.points), pts, rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(cloud.colors) * 255, colors, atol=1e-6)


def test_visualize_sample_writes_views(tmp_path, two_blobs):
    pts, labels = two_blobs
    pred = labels.copy()
    pred[:10] = 1
    out = visualize_sample(pts, str(tmp_path), 'blobs', gt=labels, pred=pred, class_names=['sphere', 'cube'],
                           renderer=MatplotlibRenderer(), width=W, height=H)
    assert out['accuracy'] == pytest.approx(190 / 200)
    assert sorted(out['ply']) == ['errors', 'ground_truth', 'prediction']
    img = np.asarray(Image.open(out['image']).convert('RGB'))
    assert img.shape[1] == 3 * W and img.shape[0] > H  # three panels side by side, titles + legend
    err = _parse_ply(out['ply']['errors'])
    assert (np.stack([err['red'], err['green'], err['blue']], 1) == WRONG_COLOR).all(1).sum() == 10
    with pytest.raises(ValueError, match='prediction has 5 labels for 200 points'):
        visualize_sample(pts, str(tmp_path), gt=labels, pred=np.zeros(5), renderer=MatplotlibRenderer())
    # a single class label per cloud (classification) colours the whole cloud and is named in the title
    out = visualize_sample(pts, str(tmp_path), 'cls', gt=np.array([1]), pred=np.array([0]),
                           class_names=['sphere', 'cube'], renderer=MatplotlibRenderer(), ply=False)
    assert out['accuracy'] == 0.0 and osp.isfile(out['image'])


def test_build_renderer_falls_back_to_matplotlib_and_says_so(monkeypatch, capsys):
    from projects.pointcloud import visualization as vis

    class NoContext:
        def __init__(self, *args, **kwargs):
            raise RuntimeError('open3d could not create an offscreen window (no display and no EGL)')

    monkeypatch.setattr(vis, 'Open3DRenderer', NoContext)
    renderer = vis.build_renderer('auto')
    assert renderer.name == 'matplotlib'
    assert 'point-cloud renderer: matplotlib (open3d unavailable: open3d could not create' in capsys.readouterr().out
    with pytest.raises(RuntimeError, match='could not create an offscreen window'):
        vis.build_renderer('open3d')
    with pytest.raises(ValueError, match="renderer must be 'auto', 'open3d' or 'matplotlib', got 'vtk'"):
        vis.build_renderer('vtk')
