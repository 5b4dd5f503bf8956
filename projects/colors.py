"""Label colours and label accuracy shared by the segmentation sheets and the point-cloud renders."""
from __future__ import annotations

from typing import Sequence

import numpy as np

IGNORE_COLOR = (60, 60, 60)   # labels outside the palette (ignore index, unlabelled)


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
