"""Pictures of point clouds: class colours, a framing camera, two renderers, sheets and PLY.

A picture of one sample is a row of *views* of the same points under the same camera,
each with its own colours (ground truth, prediction, errors), and a legend of the class
colours below them. The pieces are reusable on their own:

* colours: :func:`class_palette`, :func:`colorize`, :func:`error_colors`;
* camera: :class:`Camera` / :func:`frame_camera`, a pinhole camera looking at the centre of
  the cloud from a fixed direction and far enough away that the bounding sphere fits;
* renderers: :class:`Open3DRenderer` (open3d's legacy ``Visualizer`` in an offscreen EGL
  window) and :class:`MatplotlibRenderer` (the same pinhole projection drawn with
  matplotlib, far points first); :func:`build_renderer` picks open3d when it can create a
  context and logs which one it uses;
* output: :func:`compose_sheet` (views + titles + legend -> PNG), :func:`write_ply`
  (binary little-endian PLY with ``uchar`` colours), :func:`contact_sheet` and
  :func:`write_index_html` for a batch, and :func:`visualize_sample` for all of it at once.

Labels outside ``[0, num_classes)`` (ignore indices such as -1 or 255) are drawn in
:data:`IGNORE_COLOR` and are neither right nor wrong in the error view.
"""
from __future__ import annotations

import html
import math
import os
import os.path as osp
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from projects.colors import IGNORE_COLOR, colorize, correctness  # noqa: F401  (re-exported)

RIGHT_COLOR = (190, 190, 190)
WRONG_COLOR = (230, 30, 30)
BACKGROUND = (255, 255, 255)
_TAB20_ORDER = [0, 2, 4, 8, 10, 12, 16, 18, 1, 3, 5, 9, 11, 13, 17, 19, 6, 7, 14, 15]
_UP_AXES = {'x': (1., 0., 0.), 'y': (0., 1., 0.), 'z': (0., 0., 1.)}


# --------------------------------------------------------------------------- colours
def class_palette(num_classes: int, palette: Sequence | None = None) -> np.ndarray:
    """(K, 3) uint8 colours, one per class.

    A dataset palette (``METAINFO['palette']``) is used as given when it has at least
    ``num_classes`` entries; otherwise colours come from matplotlib's ``tab20`` (K <= 20; red and
    grey last, they mark errors) or from evenly spaced hues with alternating brightness (K > 20),
    the same every time.
    """
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    if palette is not None and len(palette) >= num_classes:
        pal = np.asarray(palette[:num_classes], dtype=np.float64)
        if pal.ndim != 2 or pal.shape[1] != 3:
            raise ValueError(f'palette must be a list of (r, g, b) triples, got shape {pal.shape}')
        if pal.max() <= 1.0:
            pal = pal * 255
        return np.clip(np.round(pal), 0, 255).astype(np.uint8)
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb
    if num_classes <= 20:
        # tab20, saturated colours first; reds and greys last (they mean "wrong" and "right")
        rgb = np.asarray(colormaps['tab20'].colors)[_TAB20_ORDER[:num_classes]]
    else:
        hue = (np.arange(num_classes) * 0.618033988749895) % 1.0
        sat = np.where(np.arange(num_classes) % 3 == 2, 0.55, 0.85)
        val = np.where(np.arange(num_classes) % 2 == 1, 0.7, 0.95)
        rgb = hsv_to_rgb(np.stack([hue, sat, val], axis=1))
    return np.round(rgb * 255).astype(np.uint8)


def error_colors(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, float]:
    """Colours of the error view and the accuracy over valid points.

    Wrong points are :data:`WRONG_COLOR`, right ones :data:`RIGHT_COLOR`, points whose ground
    truth is outside ``[0, num_classes)`` :data:`IGNORE_COLOR`. Accuracy is NaN without valid points.
    """
    gt, pred = np.asarray(gt).reshape(-1), np.asarray(pred).reshape(-1)
    if gt.shape != pred.shape:
        raise ValueError(f'ground truth has {gt.size} labels but prediction has {pred.size}')
    valid, right, acc = correctness(gt, pred, num_classes)
    out = np.empty((gt.size, 3), np.uint8)
    out[:] = IGNORE_COLOR
    out[valid] = WRONG_COLOR
    out[right] = RIGHT_COLOR
    return out, acc


def height_colors(points: np.ndarray, up: str = 'y') -> np.ndarray:
    """Colours by height along the ``up`` axis (viridis), for a cloud without labels."""
    from matplotlib import colormaps
    h = np.asarray(points, np.float64) @ np.asarray(_UP_AXES[up])
    h = (h - h.min()) / max(np.ptp(h), 1e-12)
    return np.round(colormaps['viridis'](h)[:, :3] * 255).astype(np.uint8)


# --------------------------------------------------------------------------- camera
@dataclass(frozen=True)
class Camera:
    """A pinhole camera (OpenCV convention: x right, y down, z forward) for a W x H image.

    ``extrinsic`` (4, 4) maps world to camera coordinates; ``fov`` is the vertical field of view
    in degrees. Both renderers project with exactly these numbers.
    """

    width: int
    height: int
    fov: float
    extrinsic: np.ndarray

    @property
    def focal(self) -> float:
        return (self.height / 2.0) / math.tan(math.radians(self.fov) / 2.0)

    @property
    def intrinsic(self) -> np.ndarray:
        f = self.focal
        return np.array([[f, 0., self.width / 2.0 - 0.5],
                         [0., f, self.height / 2.0 - 0.5],
                         [0., 0., 1.]])

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> (N, 2) pixel coordinates (u right, v down) and (N,) depths."""
        pts = np.asarray(points, np.float64)
        cam = pts @ self.extrinsic[:3, :3].T + self.extrinsic[:3, 3]
        depth = cam[:, 2]
        uv = cam[:, :2] / np.maximum(depth, 1e-9)[:, None] * self.focal
        uv += np.array([self.width / 2.0 - 0.5, self.height / 2.0 - 0.5])
        return uv, depth


def frame_camera(points: np.ndarray, width: int = 480, height: int = 480, up: str = 'y',
                 azimuth: float = 45.0, elevation: float = 25.0, fov: float = 40.0,
                 margin: float = 1.08) -> Camera:
    """The camera that frames ``points``: it looks at the centre of their bounding box from the
    direction given by ``azimuth``/``elevation`` (degrees, around the ``up`` axis), at the distance
    where the bounding sphere fills the smaller image side (times ``margin``)."""
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError(f'points must be (N, 3) with N >= 1, got shape {pts.shape}')
    if up not in _UP_AXES:
        raise ValueError(f'up must be one of {sorted(_UP_AXES)}, got {up!r}')
    center = (pts.min(0) + pts.max(0)) / 2
    radius = max(float(np.linalg.norm(pts - center, axis=1).max()), 1e-6)
    up_v = np.asarray(_UP_AXES[up])
    # two horizontal axes orthogonal to up, forming a right-handed frame (a, b, up)
    a = np.roll(up_v, 1)
    b = np.cross(up_v, a)
    az, el = math.radians(azimuth), math.radians(elevation)
    front = math.cos(el) * (math.cos(az) * a + math.sin(az) * b) + math.sin(el) * up_v  # centre -> eye
    half = math.radians(fov) / 2
    if width < height:  # the narrower side sets the framing
        half = math.atan(math.tan(half) * width / height)
    eye = center + front * radius * margin / math.sin(half)
    forward = -front
    right = np.cross(forward, up_v)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    ext = np.eye(4)
    ext[:3, :3] = rot
    ext[:3, 3] = -rot @ eye
    return Camera(int(width), int(height), float(fov), ext)


# --------------------------------------------------------------------------- renderers
def _check_cloud(points: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, np.float64)
    colors = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got shape {points.shape}')
    if colors.shape != points.shape:
        raise ValueError(f'colors must be (N, 3) like points {points.shape}, got {colors.shape}')
    if colors.dtype != np.uint8:
        colors = np.clip(np.round(colors * 255 if colors.max() <= 1.0 else colors), 0, 255).astype(np.uint8)
    return points, colors


class MatplotlibRenderer:
    """Draws the camera's perspective projection as a matplotlib scatter, far points first.

    Needs no OpenGL; used when open3d cannot create an offscreen context.
    """

    name = 'matplotlib'

    def __init__(self, point_size: float = 3.0, background=BACKGROUND):
        self.point_size = point_size
        self.background = tuple(background)

    def render(self, points: np.ndarray, colors: np.ndarray, camera: Camera) -> np.ndarray:
        """(H, W, 3) uint8 image of ``points`` coloured ``colors`` seen by ``camera``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        points, colors = _check_cloud(points, colors)
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
        """(H, W, 3) uint8 image of ``points`` coloured ``colors`` seen by ``camera``."""
        o3d = self.o3d
        points, colors = _check_cloud(points, colors)
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


# --------------------------------------------------------------------------- sheets
def compose_sheet(images: Sequence[np.ndarray], titles: Sequence[str], out_file: str,
                  legend: Sequence[tuple[str, Sequence[int]]] = (), suptitle: str | None = None,
                  legend_cols: int | None = None) -> str:
    """Write the views side by side with their titles and a colour legend below; return ``out_file``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    if len(images) != len(titles) or not images:
        raise ValueError(f'need one title per image, got {len(images)} images and {len(titles)} titles')
    h, w = images[0].shape[:2]
    dpi = 100
    n = len(images)
    legend_rows = 0
    if legend:
        legend_cols = legend_cols or max(1, min(len(legend), (n * w) // 130))
        legend_rows = math.ceil(len(legend) / legend_cols)
    top = 0.35 + (0.3 if suptitle else 0)
    bottom = 0.1 + 0.22 * legend_rows
    fig_w, fig_h = n * w / dpi, h / dpi + top + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor='white')
    canvas = FigureCanvasAgg(fig)
    for i, (img, title) in enumerate(zip(images, titles)):
        ax = fig.add_axes((i / n, bottom / fig_h, 1 / n, (h / dpi) / fig_h))
        ax.imshow(img, interpolation='nearest')
        ax.set_title(title, fontsize=10)
        ax.axis('off')
    if suptitle:
        fig.suptitle(suptitle, fontsize=11, y=1 - 0.05 / fig_h)
    if legend:
        handles = [Patch(facecolor=np.asarray(c) / 255, edgecolor='black', linewidth=0.5, label=name)
                   for name, c in legend]
        fig.legend(handles=handles, loc='lower center', ncol=legend_cols, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.0), handlelength=1.2, columnspacing=1.0)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=dpi, facecolor='white')
    del canvas
    return out_file


def contact_sheet(image_files: Sequence[str], out_file: str, cols: int = 2, thumb_width: int = 600,
                  captions: Sequence[str] | None = None) -> str:
    """Tile the given PNGs (scaled to ``thumb_width``) into one PNG grid with captions."""
    from PIL import Image, ImageDraw, ImageFont
    if not image_files:
        raise ValueError('contact_sheet needs at least one image')
    thumbs = []
    for f in image_files:
        im = Image.open(f).convert('RGB')
        scale = thumb_width / im.width
        thumbs.append(im.resize((thumb_width, max(1, round(im.height * scale))), Image.LANCZOS))
    cols = max(1, min(cols, len(thumbs)))
    rows = math.ceil(len(thumbs) / cols)
    font = ImageFont.load_default(size=14)
    cell_h = max(t.height for t in thumbs) + 20
    sheet = Image.new('RGB', (cols * thumb_width, rows * cell_h), 'white')
    draw = ImageDraw.Draw(sheet)
    for i, t in enumerate(thumbs):
        x, y = (i % cols) * thumb_width, (i // cols) * cell_h
        sheet.paste(t, (x, y + 20))
        caption = captions[i] if captions else osp.basename(image_files[i])
        draw.text((x + 4, y + 2), caption, fill=(0, 0, 0), font=font)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    # thumbnails resampled with LANCZOS have many colours; 256 keep the file small
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out_file, optimize=True)
    return out_file


def write_index_html(entries: Sequence[dict], out_file: str, title: str = 'Predictions') -> str:
    """An HTML page listing pictures: each entry has ``image`` (path), ``caption`` and optional ``links``
    (dict name -> path, e.g. PLY files). Paths are written relative to the page."""
    base = osp.dirname(osp.abspath(out_file))

    def rel(p):
        return html.escape(osp.relpath(osp.abspath(p), base))

    rows = []
    for e in entries:
        links = ' '.join(f'<a href="{rel(p)}">{html.escape(k)}</a>' for k, p in e.get('links', {}).items())
        rows.append(f'<figure><a href="{rel(e["image"])}"><img src="{rel(e["image"])}" width="480"></a>'
                    f'<figcaption>{html.escape(e.get("caption", ""))} {links}</figcaption></figure>')
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            '<style>body{font-family:sans-serif} figure{display:inline-block;margin:6px}</style>'
            f'</head><body><h1>{html.escape(title)}</h1>\n' + '\n'.join(rows) + '\n</body></html>\n')
    os.makedirs(base, exist_ok=True)
    with open(out_file, 'w') as f:
        f.write(page)
    return out_file


# --------------------------------------------------------------------------- PLY
def write_ply(path: str, points: np.ndarray, colors: np.ndarray | None = None,
              labels: np.ndarray | None = None) -> str:
    """Binary little-endian PLY: float32 ``x y z``, optional ``uchar red green blue`` and ``int label``."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got shape {points.shape}')
    n = len(points)
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    header = ['ply', 'format binary_little_endian 1.0', f'element vertex {n}',
              'property float x', 'property float y', 'property float z']
    if colors is not None:
        _, colors = _check_cloud(points, colors)
        fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
        header += ['property uchar red', 'property uchar green', 'property uchar blue']
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.size != n:
            raise ValueError(f'labels has {labels.size} entries for {n} points')
        fields += [('label', '<i4')]
        header += ['property int label']
    header.append('end_header')
    rec = np.empty(n, dtype=fields)
    rec['x'], rec['y'], rec['z'] = points[:, 0], points[:, 1], points[:, 2]
    if colors is not None:
        rec['red'], rec['green'], rec['blue'] = colors[:, 0], colors[:, 1], colors[:, 2]
    if labels is not None:
        rec['label'] = labels
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(('\n'.join(header) + '\n').encode('ascii'))
        f.write(rec.tobytes())
    return path


# --------------------------------------------------------------------------- one sample
def _legend(labels: Sequence[np.ndarray], palette: np.ndarray, class_names: Sequence[str] | None,
            max_entries: int = 24) -> list[tuple[str, Sequence[int]]]:
    present = np.unique(np.concatenate([np.asarray(x).reshape(-1) for x in labels]).astype(np.int64))
    present = present[(present >= 0) & (present < len(palette))]
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(palette))]
    entries = [(names[k], tuple(palette[k])) for k in present[:max_entries]]
    if len(present) > max_entries:
        entries.append((f'+{len(present) - max_entries} more', BACKGROUND))
    return entries


def _per_point(labels, n: int, what: str) -> tuple[np.ndarray, bool]:
    """Labels as (n,) array; a single label (a classification target) is repeated. Returns (labels, scalar)."""
    arr = np.asarray(labels).reshape(-1)
    if arr.size == 1:
        return np.full(n, int(arr[0]), np.int64), True
    if arr.size != n:
        raise ValueError(f'{what} has {arr.size} labels for {n} points (expected {n} or 1)')
    return arr.astype(np.int64), False


def visualize_sample(points: np.ndarray, out_dir: str, name: str = 'sample',
                     gt: np.ndarray | None = None, pred: np.ndarray | None = None,
                     class_names: Sequence[str] | None = None, palette: Sequence | None = None,
                     num_classes: int | None = None, colors: np.ndarray | None = None,
                     renderer=None, camera: Camera | None = None, width: int = 400, height: int = 400,
                     up: str = 'y', ply: bool = True, title: str | None = None) -> dict:
    """Render one cloud: ground truth | prediction | errors (the views that the inputs allow).

    Args:
        points: (N, 3) coordinates.
        out_dir: where ``{name}.png`` and, with ``ply``, ``{name}_{view}.ply`` are written.
        gt, pred: (N,) per-point labels, or one label each for a classified cloud.
        class_names: names for the legend (``METAINFO['classes']``); ``num_classes`` defaults to
            their number, else to the largest label + 1.
        palette: the dataset's colours; generated by :func:`class_palette` when absent.
        colors: (N, 3) colours for a cloud without labels (else coloured by height).
        renderer: from :func:`build_renderer`; built with ``'auto'`` when absent.
        camera: shared by all views; :func:`frame_camera` of ``points`` when absent.

    Returns:
        dict with ``image`` (PNG path), ``ply`` (view -> PLY path), ``accuracy`` (or None) and ``renderer``.
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must be (N, 3), got shape {points.shape}')
    n = len(points)
    renderer = renderer or build_renderer('auto')
    camera = camera or frame_camera(points, width, height, up=up)
    given = [x for x in (gt, pred) if x is not None]
    if num_classes is None:
        if class_names is not None:
            num_classes = len(class_names)
        elif given:
            num_classes = int(max(np.asarray(x).max() for x in given)) + 1
    views, legend, acc, scalar_caption = [], [], None, []
    if given:
        pal = class_palette(max(num_classes, 1), palette)
        names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]

        def label_name(k):
            return names[k] if 0 <= k < len(names) else f'ignored ({k})'

        lab = {}
        for key, vals in (('ground truth', gt), ('prediction', pred)):
            if vals is None:
                continue
            arr, scalar = _per_point(vals, n, key)
            lab[key] = arr
            views.append((key, colorize(arr, pal), arr))
            if scalar:
                scalar_caption.append(f'{key}: {label_name(int(arr[0]))}')
        legend = _legend(list(lab.values()), pal, names)
        if len(lab) == 2:
            err, acc = error_colors(lab['ground truth'], lab['prediction'], num_classes)
            views.append((f'errors (acc {100 * acc:.1f}%)', err, None))
            legend += [('right', RIGHT_COLOR), ('wrong', WRONG_COLOR)]
    else:
        if colors is not None:
            _, cols = _check_cloud(points, colors)
        else:
            cols = height_colors(points, up)
        views.append(('points', cols, None))
    images = [renderer.render(points, cols, camera) for _, cols, _ in views]
    titles = [v[0] for v in views]
    sup = title or name
    if scalar_caption:
        sup += '  |  ' + ', '.join(scalar_caption)
    out_png = compose_sheet(images, titles, osp.join(out_dir, f'{name}.png'), legend=legend, suptitle=sup)
    plys = {}
    if ply:
        for key, cols, labels in views:
            tag = key.split(' (')[0].replace(' ', '_')
            plys[tag] = write_ply(osp.join(out_dir, f'{name}_{tag}.ply'), points, cols, labels)
    return dict(image=out_png, ply=plys, accuracy=acc, renderer=renderer.name)


# --------------------------------------------------------------------------- files
CLOUD_SUFFIXES = ('.ply', '.pcd', '.xyz', '.txt', '.pts', '.npy', '.npz', '.h5', '.hdf5')


def _pick(rows: np.ndarray, index: int | None, path: str) -> np.ndarray:
    """A batch of clouds (B, N, C) -> the one at ``index``; a single cloud passes through."""
    if rows.ndim == 3:
        if index is None:
            raise ValueError(f'{path} holds {rows.shape[0]} clouds {rows.shape}; choose one with --index')
        if not 0 <= index < rows.shape[0]:
            raise IndexError(f'--index {index} out of range: {path} holds {rows.shape[0]} clouds')
        return rows[index]
    return rows


def read_cloud(path: str, index: int | None = None, label_column: int | None = None) -> dict:
    """Read a point cloud file into ``dict(points (N, 3), colors (N, 3) uint8 or None, labels or None)``.

    * ``.ply`` / ``.pcd``: through open3d (points and colours);
    * ``.xyz`` / ``.txt`` / ``.pts``: whitespace- or comma-separated columns, x y z first
      (ModelNet40 ``*_normal_resampled`` and ShapeNetPart files); ``label_column`` picks a label
      column (ShapeNetPart: ``-1``, the part id);
    * ``.npy``: (N, >=3) or (B, N, >=3) with ``index``; ``.npz``: ``points``/``pos``/``data`` and
      optional ``labels``/``seg``/``pid``/``label``;
    * ``.h5`` / ``.hdf5``: the ModelNet40 / ShapeNetPart HDF5 layout, ``data`` (B, N, 3) plus
      ``pid`` (B, N) part labels or ``label`` (B, 1) class labels; ``index`` selects the sample.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'point cloud file not found: {path}')
    suffix = osp.splitext(path)[1].lower()
    colors = labels = None
    if suffix in ('.ply', '.pcd'):
        from projects.compat.open3d import import_open3d
        cloud = import_open3d().io.read_point_cloud(path)
        points = np.asarray(cloud.points)
        if len(points) == 0:
            raise ValueError(f'{path}: no points could be read (not a point-cloud {suffix} file?)')
        if cloud.has_colors():
            colors = np.round(np.asarray(cloud.colors) * 255).astype(np.uint8)
    elif suffix in ('.xyz', '.txt', '.pts'):
        with open(path) as f:
            text = f.read().replace(',', ' ')
        try:
            arr = np.loadtxt(text.splitlines(), ndmin=2)
        except ValueError as err:
            raise ValueError(f'{path}: not a table of numbers ({err})') from None
        if arr.shape[1] < 3:
            raise ValueError(f'{path}: needs at least 3 columns (x y z), got {arr.shape[1]}')
        points = arr[:, :3]
        if label_column is not None:
            labels = arr[:, label_column].astype(np.int64)
    elif suffix in ('.npy', '.npz'):
        if suffix == '.npy':
            arr, extra = np.load(path), {}
        else:
            with np.load(path) as z:
                extra = {k: z[k] for k in z.files}
            key = next((k for k in ('points', 'pos', 'data', 'xyz') if k in extra), None)
            if key is None:
                raise KeyError(f'{path}: no points/pos/data/xyz array (arrays: {sorted(extra)})')
            arr = extra[key]
        arr = _pick(np.asarray(arr), index, path)
        if arr.ndim != 2 or arr.shape[1] < 3:
            raise ValueError(f'{path}: expected (N, >=3) or (B, N, >=3) points, got {arr.shape}')
        points = arr[:, :3]
        for key in ('labels', 'seg', 'pid', 'label'):
            if key in extra:
                lab = np.asarray(extra[key])
                labels = lab[index] if index is not None and lab.ndim >= 1 and lab.shape[0] != len(points) else lab
                break
    elif suffix in ('.h5', '.hdf5'):
        import h5py
        with h5py.File(path, 'r') as f:
            if 'data' not in f:
                raise KeyError(f'{path}: no "data" dataset (keys: {sorted(f.keys())})')
            n = f['data'].shape[0]
            if index is None:
                raise ValueError(f'{path} holds {n} clouds; choose one with --index')
            if not 0 <= index < n:
                raise IndexError(f'--index {index} out of range: {path} holds {n} clouds')
            points = np.asarray(f['data'][index])[:, :3]
            for key in ('pid', 'seg', 'label'):
                if key in f:
                    labels = np.asarray(f[key][index]).reshape(-1)
                    break
    else:
        raise ValueError(f'{path}: unknown point-cloud suffix {suffix!r}; expected one of {CLOUD_SUFFIXES}')
    return dict(points=np.asarray(points, np.float64), colors=colors,
                labels=None if labels is None else np.asarray(labels).astype(np.int64).reshape(-1))


def read_labels(path: str) -> np.ndarray:
    """Labels from ``.npy`` or a text file (one integer per line, or whitespace separated)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'label file not found: {path}')
    try:
        arr = np.load(path) if path.endswith('.npy') else np.loadtxt(path, ndmin=1)
    except ValueError as err:
        raise ValueError(f'{path}: not a list of integer labels ({err})') from None
    arr = np.asarray(arr).reshape(-1)
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f'{path}: labels must be integers, got values like {arr[np.mod(arr, 1) != 0][:3]}')
    return arr.astype(np.int64)


def label_names(metainfo: dict, per_point: bool) -> list[str] | None:
    """Names of the labels a sample carries: ``part_names`` for part labels when the dataset has
    them, else ``<category>/<k>`` built from ``category_parts``; ``classes`` otherwise."""
    classes = metainfo.get('classes')
    if per_point and metainfo.get('part_names') is not None:
        return list(metainfo['part_names'])
    if per_point and metainfo.get('category_parts') is not None and classes is not None:
        parts = metainfo['category_parts']
        names = [''] * (max(max(p) for p in parts if p) + 1)
        for cat, ids in zip(classes, parts):
            for k, pid in enumerate(ids):
                names[pid] = f'{cat}/{k}'
        return names
    return None if classes is None else list(classes)
