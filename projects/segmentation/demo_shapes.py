"""``DemoShapes``: a small synthetic segmentation dataset in the ADE20K folder layout.

Each image shows 1-4 filled shapes (circle, square, triangle) on a noisy, textured, low-saturation
background; each class is tinted in its own band of hues (with jitter and per-pixel noise), and
shapes may overlap (the one drawn last wins). Labels: 0 background, 1 circle, 2 square, 3 triangle.

Layout written by :func:`generate` (as mmseg's ADE20K)::

    ROOT/images/{training,validation}/NNNNN.png        RGB
    ROOT/annotations/{training,validation}/NNNNN.png   uint8 class index per pixel
"""
from __future__ import annotations

import colorsys
import math
import os
import os.path as osp
from typing import Callable, Iterable, Optional

import cv2
import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

CLASSES = ('background', 'circle', 'square', 'triangle')
PALETTE = [[0, 0, 0], [220, 20, 60], [0, 160, 60], [30, 80, 230]]
# hue centres of the three shape classes (HSV, [0, 1)) and the jitter around them
HUES = {1: 0.0, 2: 0.33, 3: 0.62}
HUE_JITTER = 0.09


@DATASETS.register_module()
class DemoShapesDataset(BaseSegDataset):
    """The synthetic shapes dataset (see :func:`generate`), ADE20K-like layout, PNG images."""

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False, **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-saturation texture: smooth noise at two scales plus grain, random grey level and tint."""
    img = np.zeros((size, size, 3), np.float32)
    for cells, amp in ((4, 50.0), (16, 25.0)):
        coarse = rng.normal(0.0, 1.0, (cells, cells, 1)).astype(np.float32)
        img += amp * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
    base = rng.uniform(70, 170)
    tint = rng.normal(0.0, 10.0, 3)
    img += base + tint + rng.normal(0.0, 12.0, (size, size, 3))
    return img


def _shape_mask(rng: np.random.Generator, cls: int, size: int) -> np.ndarray:
    r = rng.uniform(0.12, 0.25) * size
    cx, cy = rng.uniform(r, size - r, 2)
    mask = np.zeros((size, size), np.uint8)
    if cls == 1:
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 1, -1)
        return mask.astype(bool)
    n = 4 if cls == 2 else 3
    rot = rng.uniform(0, 2 * math.pi)
    pts = [(cx + r * math.cos(rot + 2 * math.pi * i / n), cy + r * math.sin(rot + 2 * math.pi * i / n))
           for i in range(n)]
    cv2.fillPoly(mask, [np.round(np.array(pts)).astype(np.int32)], 1)
    return mask.astype(bool)


def _shape_colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    h = (HUES[cls] + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0
    s, v = rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)
    return 255.0 * np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


def make_sample(rng: np.random.Generator, size: int = 64):
    """One (image uint8 (H, W, 3) RGB, label uint8 (H, W)) pair."""
    img = _background(rng, size)
    label = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 5)):
        cls = int(rng.integers(1, len(CLASSES)))
        mask = _shape_mask(rng, cls, size)
        colour = _shape_colour(rng, cls) + rng.normal(0.0, 15.0, (size, size, 3))
        img[mask] = colour[mask]
        label[mask] = cls
    return np.clip(img, 0, 255).astype(np.uint8), label


def generate(out: str, num_train: int = 200, num_val: int = 50, size: int = 64, seed: int = 0,
             progress: Optional[Callable[[Iterable], Iterable]] = None) -> str:
    """Write the dataset under ``out`` (ADE20K layout); same seed, same files. Returns ``out``.

    ``progress`` wraps the iterable of images to write (e.g. :func:`projects.progress.track`).
    """
    if size < 16:
        raise ValueError(f'generate: size must be >= 16 pixels, got {size}')
    rngs = {}
    for split, offset in (('training', 0), ('validation', 1)):
        rngs[split] = np.random.default_rng([seed, offset])
        os.makedirs(osp.join(out, 'images', split), exist_ok=True)
        os.makedirs(osp.join(out, 'annotations', split), exist_ok=True)
    jobs = [('training', i) for i in range(num_train)] + [('validation', i) for i in range(num_val)]
    for split, i in (progress or iter)(jobs):
        img, label = make_sample(rngs[split], size)
        cv2.imwrite(osp.join(out, 'images', split, f'{i:05d}.png'), img[..., ::-1])
        cv2.imwrite(osp.join(out, 'annotations', split, f'{i:05d}.png'), label)
    return out
