"""Side-by-side sheets for semantic segmentation: image | ground truth | prediction.

The colours are the dataset's palette (``METAINFO['palette']``); pixels whose label is the
ignore index (or outside the palette) are drawn in :data:`projects.colors.IGNORE_COLOR`. The
legend lists the names of the classes that occur in any ground truth or prediction of the sheet.
The layout is :func:`projects.sheets.compose_grid`, shared with the point-cloud pictures.

This is the demo picture; per-image overlays of ``tools/test.py --show-dir`` come from mmseg's
``SegLocalVisualizer``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from projects.colors import colorize, correctness
from projects.sheets import Panel, compose_grid, label_legend


def colorize_mask(mask: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) integer labels -> (H, W, 3) uint8; labels outside the palette get ``IGNORE_COLOR``."""
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
    if not rows:
        raise ValueError('segmentation_sheet needs at least one row')
    if len(class_names) != len(palette):
        raise ValueError(f'{len(class_names)} class names but {len(palette)} palette colours')
    k = len(class_names)
    grid, labels = [], []
    for i, r in enumerate(rows):
        img, pred, gt = np.asarray(r['image']), np.asarray(r['pred']).squeeze(), r.get('gt')
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'row {i}: image must be (H, W, 3) RGB, got shape {img.shape}')
        gt = None if gt is None else np.asarray(gt).squeeze()
        for key, m in (('pred', pred), ('gt', gt)):
            if m is not None and m.shape != img.shape[:2]:
                raise ValueError(f'row {i}: {key} has shape {np.asarray(r[key]).shape}, image is {img.shape[:2]}')
        acc = None if gt is None else pixel_accuracy(gt, pred, k)
        grid.append([Panel(img.astype(np.uint8), r.get('name', f'sample {i}')),
                     Panel(colorize_mask(gt, palette), 'ground truth') if gt is not None
                     else Panel(np.full_like(img, 255, dtype=np.uint8), 'no ground truth'),
                     Panel(colorize_mask(pred, palette),
                           'prediction' + (f' (acc {100 * acc:.1f}%)' if acc is not None else ''))])
        labels += [m for m in (gt, pred) if m is not None]
    legend = label_legend(labels, palette, class_names, max_entries=None)
    return compose_grid(grid, out_file, legend=legend, title=title, panel_height=panel_size, gap=6, margin=10)
