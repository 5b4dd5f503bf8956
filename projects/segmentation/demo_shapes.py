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
from contextlib import contextmanager
import os
import os.path as osp
from typing import Callable, Iterable, Optional

import cv2
import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from projects.bad_data import SkipBad, bad_sample

CLASSES = ('background', 'circle', 'square', 'triangle')
PALETTE = [[0, 0, 0], [220, 20, 60], [0, 160, 60], [30, 80, 230]]
# hue centres of the three shape classes (HSV, [0, 1)) and the jitter around them
HUES = {1: 0.0, 2: 0.33, 3: 0.62}
HUE_JITTER = 0.09


@DATASETS.register_module()
class DemoShapesDataset(BaseSegDataset):
    """The synthetic shapes dataset (see :func:`generate`), ADE20K-like layout, PNG images.

    Bad data are named when a sample is loaded (``BadSampleError``: the file, and its line in
    ``ann_file`` when there is one): an image or label PNG that is missing or cannot be
    decoded, a label that is not single-channel or not the image's size, label values outside
    the classes that are not ``ignore_index``. ``skip_bad=True`` logs each bad sample with the
    count so far and serves the next good one.
    """

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False,
                 skip_bad: bool = False, **kwargs):
        self.skip_bad = SkipBad(type(self).__name__, skip_bad)
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)

    def prepare_data(self, idx: int):
        return self.skip_bad.load(idx, len(self), self._checked_sample)

    def _checked_sample(self, idx: int):
        info = self.get_data_info(idx)
        try:
            with _opencv_errors_only():
                data = self.pipeline(info)
        except Exception:
            bad = self._file_problem(info)
            if bad is None:  # the files are fine: not a data problem, keep the original error
                raise
            raise bad from None
        if data is not None and 'data_samples' in data and 'gt_sem_seg' in data['data_samples']:
            self._check_label(info, data['data_samples'].gt_sem_seg.data, data['inputs'].shape[-2:])
        return data

    def _where(self, path: str) -> dict:
        """The 1-based line of ``ann_file`` naming this sample, when there is an ann_file."""
        if not self.ann_file or not osp.isfile(self.ann_file):
            return {}
        stem = osp.splitext(osp.basename(path))[0]
        with open(self.ann_file) as f:
            for number, line in enumerate(f, 1):
                if line.strip() and osp.basename(line.strip()) in (stem, osp.basename(path)):
                    return dict(line=number)
        return {}

    def _file_problem(self, info: dict):
        name = type(self).__name__
        for key, what, flag in (('img_path', 'image', cv2.IMREAD_COLOR),
                                ('seg_map_path', 'label PNG', cv2.IMREAD_UNCHANGED)):
            path = info.get(key)
            if path is None:
                continue
            problem = image_problem(path, flag)
            if problem:
                where = self._where(path)
                if where and problem == 'does not exist':
                    return bad_sample(name, self.ann_file, f'names {what} {path}, which does not exist',
                                      **where)
                return bad_sample(name, path, f'{what} {problem}')
        return None

    def _check_label(self, info: dict, label, image_hw) -> None:
        name, path = type(self).__name__, info.get('seg_map_path')
        if label.dim() != 3 or label.shape[0] != 1:
            raise bad_sample(name, path, f'label has shape {tuple(label.shape)} after the pipeline; '
                             'expected a single-channel PNG of class indices')
        if tuple(label.shape[-2:]) != tuple(image_hw):
            raise bad_sample(name, path, f'label is {tuple(label.shape[-2:])} (H, W) but its image '
                             f'{info.get("img_path")} is {tuple(image_hw)}')
        num_classes = len(self.metainfo['classes'])
        values = label.unique()
        bad = values[(values >= num_classes) & (values != self.ignore_index)]
        if len(bad):
            count = int(((label >= num_classes) & (label != self.ignore_index)).sum())
            raise bad_sample(name, path, f'{count} label pixel(s) with values {bad.tolist()[:8]} '
                             f'outside the classes 0..{num_classes - 1} (ignore index '
                             f'{self.ignore_index})')


@contextmanager
def _opencv_errors_only():
    """Silence OpenCV's warnings (e.g. "PNG input buffer is incomplete") for a moment: a bad file
    is reported once, by us, with its name."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(2)  # errors only
    try:
        yield
    finally:
        cv2.setLogLevel(level)


def image_problem(path: str, flag: int = cv2.IMREAD_UNCHANGED):
    """``None`` when ``path`` decodes as an image, else what is wrong."""
    if not osp.isfile(path):
        return 'does not exist'
    raw = np.fromfile(path, np.uint8)
    if raw.size == 0:
        return 'is empty (0 bytes)'
    with _opencv_errors_only():
        img = cv2.imdecode(raw, flag)
    if img is None:
        return f'cannot be decoded ({raw.size} bytes: truncated, corrupt or not an image)'
    return None


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
