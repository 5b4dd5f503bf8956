"""Two offscreen renderers of coloured points seen by a :class:`~.camera.Camera`.

:class:`Open3DRenderer` draws with open3d's legacy ``Visualizer`` in a hidden EGL window;
:class:`MatplotlibRenderer` draws the same pinhole projection as a scatter, far points first.
:func:`build_renderer` picks open3d when it can create a context here and logs which one it uses.
Both return (H, W, 3) uint8 images of the camera's size.
"""
from __future__ import annotations

import numpy as np

from .camera import Camera, frame_camera
from .cloud_io import check_cloud

BACKGROUND = (255, 255, 255)


class MatplotlibRenderer:
    """Draws the camera's perspective projection as a matplotlib scatter, far points first.

    Needs no OpenGL; used when open3d cannot create an offscreen context.
    """

    name = 'matplotlib'

    def __init__(self, point_size: float = 3.0, background=BACKGROUND):
        self.point_size = point_size
        self.background = tuple(background)

    def render(self, points: np.ndarray, colors: np.ndarray, camera: Camera) -> np.ndarray:
        """(H, W, 3) uint8 image of ``points`` (N, 3) coloured ``colors`` (N, 3) seen by ``camera``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        points, colors = check_cloud(points, colors)
        uv, depth = camera.project(points)
        keep = depth > 0
        order = np.argsort(-depth[keep], kind='stable')
        uv, cols = uv[keep][order], colors[keep][order]
        dpi = 100
        fig = Figure(figsize=(camera.width / dpi, camera.height / dpi), dpi=dpi,
                     facecolor=np.asarray(self.background) / 255)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(-0.5, camera.width - 0.5)
        ax.set_ylim(camera.height - 0.5, -0.5)
        ax.axis('off')
        # marker size is in points^2; a point is dpi/72 pixels
        size = (self.point_size * 72 / dpi) ** 2
        ax.scatter(uv[:, 0], uv[:, 1], s=size, c=cols / 255.0, marker='s', linewidths=0)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        pass


class Open3DRenderer:
    """open3d's legacy ``Visualizer`` in a hidden window (EGL/Mesa offscreen without a display).

    One window is created per renderer and reused for every image of the same size.
    Raises ``RuntimeError`` if open3d cannot create the window.
    """

    name = 'open3d'

    def __init__(self, point_size: float = 3.0, background=BACKGROUND):
        from projects.compat.open3d import import_open3d
        self.o3d = import_open3d()
        self.point_size = point_size
        self.background = tuple(background)
        self._vis = None
        self._size = None

    def _window(self, width: int, height: int):
        if self._vis is not None and self._size == (width, height):
            return self._vis
        self.close()
        vis = self.o3d.visualization.Visualizer()
        if not vis.create_window(window_name='attn_ops', width=width, height=height, visible=False):
            raise RuntimeError('open3d could not create an offscreen window (no display and no EGL)')
        opt = vis.get_render_option()
        opt.point_size = float(self.point_size)
        opt.background_color = np.asarray(self.background, np.float64) / 255
        opt.light_on = False
        self._vis, self._size = vis, (width, height)
        return vis

    def render(self, points: np.ndarray, colors: np.ndarray, camera: Camera) -> np.ndarray:
        """(H, W, 3) uint8 image of ``points`` (N, 3) coloured ``colors`` (N, 3) seen by ``camera``."""
        o3d = self.o3d
        points, colors = check_cloud(points, colors)
        vis = self._window(camera.width, camera.height)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        cloud.colors = o3d.utility.Vector3dVector(colors.astype(np.float64) / 255)
        vis.clear_geometries()
        vis.add_geometry(cloud, reset_bounding_box=True)
        params = o3d.camera.PinholeCameraParameters()
        intr = camera.intrinsic
        params.intrinsic = o3d.camera.PinholeCameraIntrinsic(
            camera.width, camera.height, intr[0, 0], intr[1, 1], intr[0, 2], intr[1, 2])
        params.extrinsic = camera.extrinsic
        if not vis.get_view_control().convert_from_pinhole_camera_parameters(params, allow_arbitrary=True):
            raise RuntimeError('open3d rejected the camera parameters')
        vis.poll_events()
        vis.update_renderer()
        img = np.asarray(vis.capture_screen_float_buffer(do_render=True))
        return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)

    def close(self) -> None:
        if self._vis is not None:
            self._vis.destroy_window()
            self._vis = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def build_renderer(kind: str = 'auto', point_size: float = 3.0, logger=None):
    """A renderer by name: ``'open3d'``, ``'matplotlib'`` or ``'auto'`` (open3d if it can render
    offscreen here, else matplotlib). Logs which renderer is used and why a fallback happened."""
    from mmengine.logging import print_log
    if kind not in ('auto', 'open3d', 'matplotlib'):
        raise ValueError(f"renderer must be 'auto', 'open3d' or 'matplotlib', got {kind!r}")
    if kind in ('auto', 'open3d'):
        try:
            renderer = Open3DRenderer(point_size)
            renderer.render(np.zeros((1, 3)), np.zeros((1, 3), np.uint8), frame_camera(np.zeros((1, 3)), 8, 8))
            print_log('point-cloud renderer: open3d (legacy Visualizer, offscreen)', logger=logger)
            return renderer
        except (ImportError, RuntimeError) as err:
            if kind == 'open3d':
                raise
            print_log(f'point-cloud renderer: matplotlib (open3d unavailable: {err})', logger=logger)
    else:
        print_log('point-cloud renderer: matplotlib', logger=logger)
    return MatplotlibRenderer(point_size)
