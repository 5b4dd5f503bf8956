"""Side-by-side sheets for semantic segmentation: image | ground truth | prediction.

The colours are the dataset's palette (``METAINFO['palette']``); pixels whose label is the
ignore index (or outside the palette) are drawn black-grey. The legend lists the names of the
classes that occur in any ground truth or prediction of the sheet.

This is the demo picture; per-image overlays of ``tools/test.py --show-dir`` come from mmseg's
``SegLocalVisualizer``.
"""
from __future__ import annotations

import math
import os
import os.path as osp
from typing import Sequence

import numpy as np

from projects.colors import IGNORE_COLOR, colorize, correctness  # noqa: F401  (IGNORE_COLOR re-exported)


def colorize_mask(mask: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) integer labels -> (H, W, 3) uint8; labels outside the palette get :data:`IGNORE_COLOR`."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f'a label map must be (H, W), got shape {mask.shape}')
    return colorize(mask, palette)


def pixel_accuracy(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Share of pixels with a valid ground truth (in ``[0, num_classes)``) that are predicted right."""
    return correctness(gt, pred, num_classes)[2]


def segmentation_sheet(rows: Sequence[dict], class_names: Sequence[str], palette: Sequence[Sequence[int]],
                       out_file: str, panel_size: int = 200, title: str | None = None) -> str:
    """Write an image | ground truth | prediction grid, one row per sample, with a class legend.

    Args:
        rows: dicts with ``image`` (H, W, 3) uint8 RGB, ``gt`` and ``pred`` (H, W) label maps
            (``gt`` may be None) and an optional ``name``.
        class_names, palette: the dataset's ``METAINFO`` entries (same length).
        out_file: the PNG to write.
        panel_size: height in pixels of each panel.

    Returns:
        ``out_file``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    if not rows:
        raise ValueError('segmentation_sheet needs at least one row')
    if len(class_names) != len(palette):
        raise ValueError(f'{len(class_names)} class names but {len(palette)} palette colours')
    k = len(class_names)
    for i, r in enumerate(rows):
        img, pred, gt = np.asarray(r['image']), np.asarray(r['pred']), r.get('gt')
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'row {i}: image must be (H, W, 3) RGB, got shape {img.shape}')
        for key, m in (('pred', pred), ('gt', gt)):
            if m is not None and np.asarray(m).squeeze().shape != img.shape[:2]:
                raise ValueError(f'row {i}: {key} has shape {np.asarray(m).shape}, image is {img.shape[:2]}')
    present = set()
    for r in rows:
        for m in (r.get('gt'), r['pred']):
            if m is not None:
                present |= {int(v) for v in np.unique(m) if 0 <= v < k}
    dpi = 100
    aspect = max(np.asarray(r['image']).shape[1] / np.asarray(r['image']).shape[0] for r in rows)
    pw, ph = panel_size * aspect / dpi, panel_size / dpi
    legend_cols = max(1, min(len(present), int(3 * pw * dpi // 110)))
    legend_h = 0.25 * math.ceil(max(len(present), 1) / legend_cols) + 0.15
    head = 0.3 + (0.3 if title else 0)
    row_h = ph + 0.25
    fig_h = head + row_h * len(rows) + legend_h
    gap = 0.06
    fig_w = 3 * pw + 2 * gap + 0.2
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi, facecolor='white')
    FigureCanvasAgg(fig)
    for i, r in enumerate(rows):
        gt = r.get('gt')
        panels = [np.asarray(r['image'], np.uint8),
                  colorize_mask(gt, palette) if gt is not None else np.full_like(r['image'], 255),
                  colorize_mask(r['pred'], palette)]
        acc = pixel_accuracy(np.asarray(gt).squeeze(), np.asarray(r['pred']).squeeze(), k) if gt is not None else None
        labels = [r.get('name', f'sample {i}'), 'ground truth' if gt is not None else 'no ground truth',
                  'prediction' + (f' (acc {100 * acc:.1f}%)' if acc is not None else '')]
        y0 = fig_h - head - row_h * (i + 1)
        for j, (panel, lab) in enumerate(zip(panels, labels)):
            ax = fig.add_axes(((0.1 + j * (pw + gap)) / fig_w, (y0 + 0.02) / fig_h, pw / fig_w, ph / fig_h))
            ax.imshow(panel, interpolation='nearest')
            ax.set_title(lab, fontsize=9, pad=3)
            ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.08 / fig_h)
    handles = [Patch(facecolor=np.asarray(palette[c]) / 255, edgecolor='black', linewidth=0.5,
                     label=class_names[c]) for c in sorted(present)]
    if handles:
        fig.legend(handles=handles, loc='lower center', ncol=legend_cols, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.0), handlelength=1.2)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=dpi, facecolor='white')
    return out_file
