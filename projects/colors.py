"""Colours of every picture: class palettes, label colours, the error view, scalar colour maps.

All colours are ``uint8`` RGB. Labels outside ``[0, num_classes)`` (ignore indices such as -1 or
255) are drawn in :data:`IGNORE_COLOR` and are neither right nor wrong.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

IGNORE_COLOR = (60, 60, 60)   # labels outside the palette (ignore index, unlabelled)
RIGHT_COLOR = (190, 190, 190)
WRONG_COLOR = (230, 30, 30)
MARK_COLOR = (255, 0, 255)     # a marked point (the query of an attention map); absent from 'jet'
_TAB20_ORDER = [0, 2, 4, 8, 10, 12, 16, 18, 1, 3, 5, 9, 11, 13, 17, 19, 6, 7, 14, 15]


def class_palette(num_classes: int, palette: Sequence | None = None) -> np.ndarray:
    """(K, 3) uint8 colours, one per class.

    A dataset palette (``METAINFO['palette']``, 0-255 or 0-1) is used as given when it has at
    least ``num_classes`` entries; otherwise colours come from matplotlib's ``tab20`` (K <= 20; red
    and grey last, they mark errors) or from evenly spaced hues with alternating brightness (K > 20),
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


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Integer labels of any shape -> ``(*shape, 3)`` uint8 palette colours; labels outside
    ``[0, len(palette))`` get :data:`IGNORE_COLOR`."""
    lab = np.asarray(labels).astype(np.int64)
    pal = np.asarray(palette, np.uint8).reshape(-1, 3)
    valid = (lab >= 0) & (lab < len(pal))
    out = np.empty(lab.shape + (3,), np.uint8)
    out[:] = IGNORE_COLOR
    out[valid] = pal[lab[valid]]
    return out


def correctness(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(valid, right, accuracy)``: ground truth inside ``[0, num_classes)``, valid and predicted
    right, and the share of valid labels predicted right (NaN without valid labels)."""
    gt, pred = np.asarray(gt).astype(np.int64), np.asarray(pred).astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f'ground truth has shape {gt.shape} but prediction has {pred.shape}')
    valid = (gt >= 0) & (gt < num_classes)
    right = valid & (gt == pred)
    return valid, right, (float(right.sum() / valid.sum()) if valid.any() else float('nan'))


def error_colors(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, float]:
    """Colours of the error view, ``(N, 3)`` uint8 for N labels of any shape, and the accuracy.

    Wrong labels are :data:`WRONG_COLOR`, right ones :data:`RIGHT_COLOR`, labels whose ground
    truth is outside ``[0, num_classes)`` :data:`IGNORE_COLOR`. Accuracy is NaN without valid labels.
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


def scalar_colors(values: np.ndarray, cmap: str = 'viridis', vmin: float | None = None,
                  vmax: float | None = None) -> np.ndarray:
    """Scalars of any shape -> ``(*shape, 3)`` uint8 colours of the matplotlib colour map ``cmap``.

    Values are scaled linearly from ``[vmin, vmax]`` (default: their min and max) to ``[0, 1]`` and
    clipped; constant values map to the low end. Heights of a cloud, attention weights, saliency.
    """
    from matplotlib import colormaps
    v = np.asarray(values, np.float64)
    lo = float(np.min(v)) if vmin is None else float(vmin)
    hi = float(np.max(v)) if vmax is None else float(vmax)
    t = np.clip((v - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return np.round(colormaps[cmap](t)[..., :3] * 255).astype(np.uint8)
