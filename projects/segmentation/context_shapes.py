"""``ContextShapes``: a synthetic segmentation task where a cue far away decides each shape's class.

Each image shows 1-3 grey shapes (circle, square, triangle: the geometry carries no class) on a
noisy, textured, low-saturation background, and a saturated cue band ``cue_size`` pixels wide along
one side (0-2 pixels in from the border). The cue's colour (red, green or blue) is the class of
every shape in the image; the cue itself is background. Every shape pixel lies at least ``gap``
pixels (Chebyshev distance) from every cue pixel, so a network whose receptive field is smaller
than ``gap`` sees where the shapes are but not which class they are: only context from across the
image (global attention, global pooling) tells. Labels: 0 background, 1 red-cued, 2 green-cued, 3 blue-cued shape.

Samples are generated in memory from a seed (:func:`make_split`); same seed, same arrays.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

CLASSES = ('background', 'red-cued', 'green-cued', 'blue-cued')
PALETTE = [[0, 0, 0], [220, 20, 60], [0, 160, 60], [30, 80, 230]]
CUE_COLOURS = np.array([[230, 40, 40], [40, 200, 60], [50, 90, 240]], np.float32)
SHAPES = ('circle', 'square', 'triangle')


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-saturation texture: smooth noise at two scales plus grain, random grey level and tint."""
    img = np.zeros((size, size, 3), np.float32)
    for cells, amp in ((4, 40.0), (16, 20.0)):
        coarse = rng.normal(0.0, 1.0, (cells, cells, 1)).astype(np.float32)
        img += amp * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
    img += rng.uniform(60, 120) + rng.normal(0.0, 8.0, 3) + rng.normal(0.0, 10.0, (size, size, 3))
    return img


def _shape_mask(rng: np.random.Generator, shape: str, centre, radius: float, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cx, cy = centre
    if shape == 'circle':
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(radius)), 1, -1)
    else:
        n = 4 if shape == 'square' else 3
        rot = rng.uniform(0, 2 * math.pi)
        pts = [(cx + radius * math.cos(rot + 2 * math.pi * i / n), cy + radius * math.sin(rot + 2 * math.pi * i / n))
               for i in range(n)]
        cv2.fillPoly(mask, [np.round(np.array(pts)).astype(np.int32)], 1)
    return mask.astype(bool)


def make_sample(rng: np.random.Generator, size: int = 64, gap: int = 24, cue_size: int = 6,
                max_shapes: int = 3):
    """One ``(image uint8 (H, W, 3) RGB, label uint8 (H, W))`` pair (see the module docstring)."""
    img = _background(rng, size)
    label = np.zeros((size, size), np.uint8)
    cue = int(rng.integers(len(CUE_COLOURS)))
    side, inset = int(rng.integers(4)), int(rng.integers(0, 3))   # top, bottom, left, right; 0-2 px in
    far = size - cue_size - inset
    x0, y0, w, h = ((0, inset, size, cue_size), (0, far, size, cue_size),
                    (inset, 0, cue_size, size), (far, 0, cue_size, size))[side]
    img[y0:y0 + h, x0:x0 + w] = CUE_COLOURS[cue] + rng.normal(0.0, 12.0, (h, w, 3))
    # pixels allowed for shapes: Chebyshev distance >= gap from the cue band
    yy, xx = np.mgrid[:size, :size]
    dist = np.maximum(np.maximum(x0 - xx, xx - (x0 + w - 1)), np.maximum(y0 - yy, yy - (y0 + h - 1)))
    allowed = dist >= gap
    target, placed = int(rng.integers(1, max_shapes + 1)), 0
    for _ in range(20 * max_shapes):
        if placed == target:
            break
        radius = rng.uniform(5.0, 9.0)
        centre = rng.uniform(radius, size - radius, 2)
        mask = _shape_mask(rng, SHAPES[rng.integers(len(SHAPES))], centre, radius, size)
        if not mask.any() or not allowed[mask].all() or (label[mask] > 0).any():
            continue
        grey = rng.uniform(170, 235)
        img[mask] = (grey + rng.normal(0.0, 10.0, (size, size, 1)))[mask]
        label[mask] = 1 + cue
        placed += 1
    return np.clip(img, 0, 255).astype(np.uint8), label


def make_split(num: int, size: int = 64, seed: int = 0, split: str = 'train', **kwargs):
    """``num`` samples as arrays: images ``(num, H, W, 3)`` uint8 RGB, labels ``(num, H, W)`` uint8.

    ``split`` picks the seed stream (``train``/``val`` never share a sample)."""
    streams = dict(train=0, val=1)
    if split not in streams:
        raise ValueError(f'make_split: split must be one of {sorted(streams)}, got {split!r}')
    rng = np.random.default_rng([seed, streams[split]])
    pairs = [make_sample(rng, size, **kwargs) for _ in range(num)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
