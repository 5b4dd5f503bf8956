"""projects/pointcloud/visualization/{camera,render}.py: one camera, two renderers, the fallback."""
import numpy as np
import pytest

from projects.colors import class_palette, colorize
from projects.pointcloud.visualization import MatplotlibRenderer, frame_camera

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


def test_frame_camera_looks_at_the_centre_and_checks_input(two_blobs):
    pts, _ = two_blobs
    cam = frame_camera(pts, W, H, up='z')
    centre = (pts.min(0) + pts.max(0)) / 2
    uv, depth = cam.project(centre[None].astype(np.float64))
    np.testing.assert_allclose(uv[0], [W / 2 - 0.5, H / 2 - 0.5], atol=1e-9)   # the principal point
    assert depth[0] > 0
    with pytest.raises(ValueError, match=r'points must be \(N, 3\) with N >= 1, got shape \(0, 3\)'):
        frame_camera(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="up must be one of \\['x', 'y', 'z'\\], got 'w'"):
        frame_camera(pts, up='w')


def test_build_renderer_falls_back_to_matplotlib_and_says_so(monkeypatch, capsys):
    from projects.pointcloud.visualization import build_renderer, render

    class NoContext:
        def __init__(self, *args, **kwargs):
            raise RuntimeError('open3d could not create an offscreen window (no display and no EGL)')

    monkeypatch.setattr(render, 'Open3DRenderer', NoContext)
    renderer = build_renderer('auto')
    assert renderer.name == 'matplotlib'
    assert 'point-cloud renderer: matplotlib (open3d unavailable: open3d could not create' in capsys.readouterr().out
    with pytest.raises(RuntimeError, match='could not create an offscreen window'):
        build_renderer('open3d')
    with pytest.raises(ValueError, match="renderer must be 'auto', 'open3d' or 'matplotlib', got 'vtk'"):
        build_renderer('vtk')
