"""Picture sheets of both domains: panels in a grid with titles and a colour legend, heatmap
overlays, contact sheets and an index page.

The building blocks:

* :class:`Panel` -- one ``(H, W, 3)`` uint8 picture and the title above it;
* :func:`label_legend` -- the legend entries ``(name, (r, g, b))`` of the labels present;
* :func:`grid_figure` / :func:`compose_grid` -- rows of panels, a title on top and the legend
  below, as a matplotlib ``Figure`` or written to a PNG;
* :func:`overlay_heatmap` -- a scalar map (an attention map, a saliency map) blended over an image;
* :func:`draw_marker` -- a ring around one pixel (the query of an attention map);
* :func:`scale_legend` -- legend entries for the colours of a scalar map, low to high;
* :func:`contact_sheet` and :func:`write_index_html` -- many PNGs in one grid PNG / one HTML page.

The segmentation sheet (image | ground truth | prediction, one row per image) and the
point-cloud sheet (ground truth | prediction | errors of one cloud) are both :func:`compose_grid`.
"""
from __future__ import annotations

import html
import math
import os
import os.path as osp
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from projects.colors import MARK_COLOR, scalar_colors

LegendEntry = tuple[str, Sequence[int]]   # (name, (r, g, b) in 0-255)
DPI = 100
TITLE_H = 0.35      # inches above each row of panels, for the panel titles
TITLE_LINE_H = 0.17  # inches more per extra line of the longest panel title of a row
SUPTITLE_H = 0.3    # inches above everything, for the sheet title
LEGEND_ROW_H = 0.22  # inches per row of legend entries (plus 0.1 below)
LEGEND_ENTRY_W = 130  # pixels of sheet width per legend column


@dataclass
class Panel:
    """One picture of a sheet: ``image`` (H, W, 3) uint8 RGB and the ``title`` above it."""

    image: np.ndarray
    title: str = ''

    def __post_init__(self):
        self.image = np.asarray(self.image)
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f'panel {self.title!r}: image must be (H, W, 3) RGB, got shape {self.image.shape}')


def label_legend(labels: Iterable[np.ndarray], palette: Sequence[Sequence[int]],
                 class_names: Sequence[str] | None = None, max_entries: int | None = 24) -> list[LegendEntry]:
    """Legend entries ``(name, colour)`` of the labels in ``[0, len(palette))`` that occur in any of
    ``labels`` (arrays of any shape), in label order; names default to the label numbers. Past
    ``max_entries`` (None: no limit) one ``'+k more'`` entry ends the list."""
    arrays = [np.asarray(x).reshape(-1) for x in labels]
    present = np.unique(np.concatenate(arrays).astype(np.int64)) if arrays else np.zeros(0, np.int64)
    present = present[(present >= 0) & (present < len(palette))]
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(palette))]
    shown = present if max_entries is None else present[:max_entries]
    entries = [(names[k], tuple(int(c) for c in palette[k])) for k in shown]
    if len(shown) < len(present):
        entries.append((f'+{len(present) - len(shown)} more', (255, 255, 255)))
    return entries


def grid_figure(rows: Sequence[Sequence[Panel]], *, legend: Sequence[LegendEntry] = (), title: str | None = None,
                panel_height: int | None = None, gap: int = 0, margin: int = 0, legend_cols: int | None = None):
    """A matplotlib ``Figure`` of panels in rows, each under its title, the ``title`` on top and
    the ``legend`` (colour patches with names) below.

    Args:
        rows: rows of :class:`Panel`; rows may have different lengths.
        legend: ``(name, (r, g, b))`` entries, e.g. from :func:`label_legend`.
        title: the sheet's title.
        panel_height: height in pixels of every panel cell; the cell width follows the widest
            aspect ratio. None: the cells are the first image's size (pictures drawn 1:1).
        gap: pixels between panels of a row; ``margin``: pixels left and right of the grid.
        legend_cols: columns of the legend (default: one per 130 pixels of sheet width).

    Images keep their aspect ratio inside their cell and are drawn with nearest-pixel
    interpolation (label maps stay crisp). A row whose titles run over several lines (``\n``) is
    ``TITLE_LINE_H`` taller per extra line. The figure is ``DPI`` = 100 dots per inch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    if not rows or not all(rows):
        raise ValueError(f'a sheet needs at least one panel in every row, got rows of {[len(r) for r in rows]} panels')
    for row in rows:
        for p in row:
            if not isinstance(p, Panel):
                raise TypeError(f'rows must hold Panel objects, got {type(p).__name__}')
    first = rows[0][0].image
    if panel_height is None:
        ch, cw = first.shape[:2]
    else:
        aspect = max(p.image.shape[1] / p.image.shape[0] for row in rows for p in row)
        ch, cw = panel_height, panel_height * aspect
    ncols = max(len(r) for r in rows)
    width_px = 2 * margin + ncols * cw + (ncols - 1) * gap
    legend_rows = 0
    if legend:
        legend_cols = legend_cols or max(1, min(len(legend), int(width_px // LEGEND_ENTRY_W)))
        legend_rows = math.ceil(len(legend) / legend_cols)
    top = SUPTITLE_H if title else 0.0
    bottom = 0.1 + LEGEND_ROW_H * legend_rows
    row_h = [ch / DPI + TITLE_H + TITLE_LINE_H * max(p.title.count('\n') for p in row) for row in rows]
    fig_w, fig_h = width_px / DPI, top + sum(row_h) + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI, facecolor='white')
    FigureCanvasAgg(fig)
    for i, row in enumerate(rows):
        y0 = fig_h - top - sum(row_h[:i + 1])   # bottom of the row's images, in inches
        for j, panel in enumerate(row):
            x0 = (margin + j * (cw + gap)) / DPI
            ax = fig.add_axes((x0 / fig_w, y0 / fig_h, cw / DPI / fig_w, ch / DPI / fig_h))
            ax.imshow(panel.image, interpolation='nearest')
            ax.set_title(panel.title, fontsize=10)
            ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.05 / fig_h)
    if legend:
        handles = [Patch(facecolor=np.asarray(c) / 255, edgecolor='black', linewidth=0.5, label=name)
                   for name, c in legend]
        fig.legend(handles=handles, loc='lower center', ncol=legend_cols, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.0), handlelength=1.2, columnspacing=1.0)
    return fig


def compose_grid(rows: Sequence[Sequence[Panel]], out_file: str, **kwargs) -> str:
    """Write :func:`grid_figure` ``(rows, **kwargs)`` to the PNG ``out_file`` and return its path."""
    fig = grid_figure(rows, **kwargs)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=DPI, facecolor='white')
    return out_file


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = 'jet',
                    vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with the scalar map ``heat`` (h, w) blended over it.

    ``heat`` is resized to (H, W) bilinearly (an attention map of a feature map over its input
    image), coloured by :func:`projects.colors.scalar_colors` (``cmap``, ``vmin``/``vmax``) and
    mixed in: ``out = (1 - alpha) * image + alpha * colour``, rounded to uint8.
    """
    from PIL import Image
    img = np.asarray(image)
    heat = np.asarray(heat, np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'image must be (H, W, 3) RGB, got shape {img.shape}')
    if heat.ndim != 2:
        raise ValueError(f'heat must be a (h, w) map, got shape {heat.shape}')
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    h, w = img.shape[:2]
    if heat.shape != (h, w):
        heat = np.asarray(Image.fromarray(np.ascontiguousarray(heat)).resize((w, h), Image.BILINEAR))
    colour = scalar_colors(heat, cmap, vmin, vmax).astype(np.float64)
    return np.round((1 - alpha) * img.astype(np.float64) + alpha * colour).astype(np.uint8)


def draw_marker(image: np.ndarray, xy: Sequence[float], color: Sequence[int] = MARK_COLOR,
                radius: float | None = None) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 with a ring and a dot at pixel ``xy`` = (x right, y down)
    in ``color`` over a black outline, so that it shows on any heatmap. ``radius`` defaults to
    3% of the image's smaller side (at least 4 pixels)."""
    from PIL import Image, ImageDraw
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'image must be (H, W, 3) RGB, got shape {img.shape}')
    r = radius if radius is not None else max(4.0, 0.03 * min(img.shape[:2]))
    x, y = float(xy[0]), float(xy[1])
    width = max(2, round(r / 3))
    pil = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    draw = ImageDraw.Draw(pil)
    color = tuple(int(c) for c in color)
    draw.ellipse((x - r, y - r, x + r, y + r), outline=(0, 0, 0), width=width + 2)
    draw.ellipse((x - r + 1, y - r + 1, x + r - 1, y + r - 1), outline=color, width=width)
    d = max(1.5, r / 4)
    draw.ellipse((x - d, y - d, x + d, y + d), fill=color, outline=(0, 0, 0))
    return np.asarray(pil)


def scale_legend(cmap: str = 'jet', labels: Sequence[str] = ('low', 'high')) -> list[LegendEntry]:
    """Legend entries naming colours of ``cmap`` spread evenly from its low to its high end."""
    stops = np.linspace(0.0, 1.0, len(labels))
    colours = scalar_colors(stops, cmap, 0.0, 1.0)
    return [(name, tuple(int(v) for v in c)) for name, c in zip(labels, colours)]


def contact_sheet(image_files: Sequence[str], out_file: str, cols: int = 2, thumb_width: int = 600,
                  captions: Sequence[str] | None = None) -> str:
    """Tile the given PNGs (scaled to ``thumb_width``) into one PNG grid with captions."""
    from PIL import Image, ImageDraw, ImageFont
    if not image_files:
        raise ValueError('contact_sheet needs at least one image')
    if captions is not None and len(captions) != len(image_files):
        raise ValueError(f'{len(captions)} captions for {len(image_files)} images')
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
