"""Pictures of point clouds, by concern:

* :mod:`.camera` -- :class:`Camera` / :func:`frame_camera`, a pinhole looking at the centre of
  the cloud from a fixed direction, far enough away that the bounding sphere fits;
* :mod:`.render` -- :class:`Open3DRenderer` (open3d's legacy ``Visualizer`` offscreen through EGL),
  :class:`MatplotlibRenderer` (the same projection drawn with matplotlib) and :func:`build_renderer`;
* :mod:`.cloud_io` -- :func:`read_cloud`, :func:`read_labels`, :func:`write_ply`;
* :mod:`.views` -- :func:`visualize_sample` (ground truth | prediction | errors -> PNG and PLY),
  :func:`render_values` (points coloured by a scalar, marked points), :func:`height_colors`,
  :func:`label_names`.

Colours come from :mod:`projects.colors`; panels, grids, legends, contact sheets and index pages
from :mod:`projects.sheets`, which the segmentation pictures share.
"""
from .camera import Camera, frame_camera  # noqa: F401
from .cloud_io import CLOUD_SUFFIXES, check_cloud, read_cloud, read_labels, write_ply  # noqa: F401
from .render import MatplotlibRenderer, Open3DRenderer, build_renderer  # noqa: F401
from .views import height_colors, label_names, render_values, visualize_sample  # noqa: F401
