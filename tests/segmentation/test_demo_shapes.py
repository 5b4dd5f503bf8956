"""The synthetic DemoShapes dataset: layout, determinism, labels, a real (non-trivial) task."""
import os
import re

import numpy as np
import pytest
from PIL import Image

import projects.segmentation  # noqa: F401
from projects.bad_data import BadSampleError
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


# --- bad data: named when the sample loads; skip_bad logs and counts ------------------------------

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]


@pytest.fixture
def copy(tmp_path):
    """A fresh 4-image copy of the layout to damage."""
    return generate(str(tmp_path / 'shapes'), num_train=4, num_val=1, size=24, seed=5)


def _dataset(root, **kwargs):
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    return DemoShapesDataset(data_root=root, pipeline=PIPELINE, data_prefix=dict(
        img_path='images/training', seg_map_path='annotations/training'), **kwargs)


def _path(root, kind, i):
    return os.path.join(root, kind, 'training', f'{i:05d}.png')


def _truncate(path):
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


def test_good_samples_pass_the_checks(copy):
    ds = _dataset(copy)
    for i in range(len(ds)):
        label = ds[i]['data_samples'].gt_sem_seg.data
        assert label.shape == (1, 24, 24) and int(label.max()) < len(CLASSES)


def test_truncated_image_is_named(copy, capfd):
    _truncate(_path(copy, 'images', 1))
    ds = _dataset(copy)
    ds[0]
    with pytest.raises(BadSampleError, match=rf'DemoShapesDataset: {_path(copy, "images", 1)}: image cannot be '
                       r'decoded \(\d+ bytes: truncated, corrupt or not an image\)$') as info:
        ds[1]
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained library traceback
    assert 'PNG input buffer is incomplete' not in capfd.readouterr().err  # OpenCV's own warning silenced


def test_corrupt_label_png_is_named(copy):
    with open(_path(copy, 'annotations', 2), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n not really a png')
    with pytest.raises(BadSampleError, match=rf'{_path(copy, "annotations", 2)}: label PNG cannot be decoded'):
        _dataset(copy)[2]


def test_missing_label_is_named(copy):
    os.remove(_path(copy, 'annotations', 3))
    with pytest.raises(BadSampleError, match=rf'{_path(copy, "annotations", 3)}: label PNG does not exist'):
        _dataset(copy)[3]


def test_label_values_outside_the_classes_are_named_ignore_index_is_fine(copy):
    import cv2
    path = _path(copy, 'annotations', 0)
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    label[:2, :] = 255  # the ignore index: fine
    cv2.imwrite(path, label)
    assert int(_dataset(copy)[0]['data_samples'].gt_sem_seg.data.max()) == 255
    label[0, :3] = 7
    label[1, 0] = 4
    cv2.imwrite(path, label)
    with pytest.raises(BadSampleError, match=rf'{path}: 4 label pixel\(s\) with values \[4, 7\] outside the '
                       r'classes 0..3 \(ignore index 255\)'):
        _dataset(copy)[0]


def test_rgb_label_is_named(copy):
    import cv2
    path = _path(copy, 'annotations', 1)
    cv2.imwrite(path, np.stack([cv2.imread(path, cv2.IMREAD_UNCHANGED)] * 3, -1))
    with pytest.raises(BadSampleError, match=rf'{path}: label has shape \(24, 24, 3\).*single-channel'):
        _dataset(copy)[1]


def test_split_file_naming_a_missing_sample_is_named_with_its_line(copy):
    ann = os.path.join(copy, 'train.txt')
    with open(ann, 'w') as f:
        f.write('00000\n00001\n00099\n')
    ds = _dataset(copy, ann_file=ann)
    assert len(ds) == 3
    with pytest.raises(BadSampleError, match=rf'{ann}:3: names image .*00099.png, which does not exist'):
        ds[2]


def test_skip_bad_logs_each_bad_file_with_the_count_and_serves_the_next_good_one(copy, mmengine_log):
    _truncate(_path(copy, 'images', 1))
    os.remove(_path(copy, 'annotations', 2))
    ds = _dataset(copy, skip_bad=True)
    first, second = ds[1], ds[2]
    assert first['data_samples'].img_path == second['data_samples'].img_path == _path(copy, 'images', 3)
    log = '\n'.join(mmengine_log)
    assert re.search(rf'skip_bad: skipping DemoShapesDataset: {_path(copy, "images", 1)}: image cannot be '
                     r'decoded .*\(1 bad so far\)', log), log
    assert re.search(rf'skipping DemoShapesDataset: {_path(copy, "annotations", 2)}: label PNG does not exist '
                     r'\(2 bad so far\)', log), log
    ds[1]
    assert len([m for m in mmengine_log if 'skip_bad' in m]) == 2  # each bad file is logged once
