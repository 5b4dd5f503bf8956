"""The synthetic DemoShapes dataset: layout, determinism, labels, a real (non-trivial) task."""
import os

import numpy as np
import pytest
from PIL import Image

import projects.segmentation  # noqa: F401
from projects.segmentation.demo_shapes import CLASSES, DemoShapesDataset, generate, make_sample


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return generate(str(tmp_path_factory.mktemp('shapes')), num_train=12, num_val=6, size=48, seed=3)


def test_ade20k_layout_and_loading(root):
    for split, n in (('training', 12), ('validation', 6)):
        assert sorted(os.listdir(os.path.join(root, 'images', split))) == [f'{i:05d}.png' for i in range(n)]
        assert len(os.listdir(os.path.join(root, 'annotations', split))) == n
    ds = DemoShapesDataset(data_root=root, data_prefix=dict(img_path='images/validation',
                                                            seg_map_path='annotations/validation'),
                           pipeline=[])
    assert len(ds) == 6
    assert ds.metainfo['classes'] == CLASSES and len(ds.metainfo['palette']) == len(CLASSES)
    info = ds[0]
    assert info['seg_map_path'].endswith('annotations/validation/00000.png')
    assert info['reduce_zero_label'] is False
    img = np.array(Image.open(info['img_path']))
    label = np.array(Image.open(info['seg_map_path']))
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8 and label.shape == (48, 48)
    assert set(np.unique(label)) <= set(range(len(CLASSES)))


def test_same_seed_same_files(tmp_path, root):
    again = generate(str(tmp_path / 'again'), num_train=12, num_val=6, size=48, seed=3)
    other = generate(str(tmp_path / 'other'), num_train=12, num_val=6, size=48, seed=4)
    rel = 'images/training/00005.png'
    a, b, c = (open(os.path.join(r, rel), 'rb').read() for r in (root, again, other))
    assert a == b and a != c


def test_every_class_appears_and_background_is_textured():
    rng = np.random.default_rng(0)
    counts = np.zeros(len(CLASSES))
    for _ in range(40):
        img, label = make_sample(rng, 64)
        counts += np.bincount(label.ravel(), minlength=len(CLASSES))
        bg = img[label == 0].astype(float)
        assert bg.std(0).min() > 10  # noisy, not a flat colour
    assert (counts > 0).all()
    assert counts[0] / counts.sum() < 0.9  # shapes cover a real share of the pixels


def _miou(pred, gt, k):
    ious = []
    for c in range(k):
        inter, union = np.sum((pred == c) & (gt == c)), np.sum((pred == c) | (gt == c))
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


def test_chance_is_low_and_colour_alone_is_not_enough():
    rng = np.random.default_rng(1)
    samples = [make_sample(rng, 64) for _ in range(20)]
    gt = np.stack([s[1] for s in samples])
    k = len(CLASSES)
    assert _miou(np.zeros_like(gt), gt, k) < 0.25                       # all background
    assert _miou(rng.integers(0, k, gt.shape), gt, k) < 0.15            # uniform guess
    # a nearest-hue rule with a saturation threshold is a strong but imperfect baseline
    import cv2

    hsv = np.stack([cv2.cvtColor(s[0], cv2.COLOR_RGB2HSV) for s in samples]).astype(float)
    hue, sat = hsv[..., 0] / 180.0, hsv[..., 1] / 255.0
    centres = np.array([0.0, 0.33, 0.62])
    dist = np.abs(((hue[..., None] - centres) + 0.5) % 1.0 - 0.5)
    rule = np.where(sat > 0.4, dist.argmin(-1) + 1, 0)
    assert _miou(rule, gt, k) < 0.95


def test_generate_rejects_tiny_images(tmp_path):
    with pytest.raises(ValueError, match='size must be >= 16'):
        generate(str(tmp_path), size=8)
