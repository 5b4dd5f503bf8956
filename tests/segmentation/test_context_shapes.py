"""ContextShapes: the cue band's colour is every shape's class, shapes keep their distance from it,
samples are seeded."""
import numpy as np
import pytest

from projects.segmentation.context_shapes import CUE_COLOURS, make_split


def test_class_is_the_cue_colour_and_shapes_keep_the_gap():
    gap = 20
    imgs, labels = make_split(24, size=64, seed=3, gap=gap, cue_size=6)
    assert imgs.shape == (24, 64, 64, 3) and imgs.dtype == np.uint8 and labels.shape == (24, 64, 64)
    seen = set()
    for img, label in zip(imgs.astype(np.float32), labels):
        cue = img.max(-1) - img.min(-1) > 100                     # the only saturated pixels
        assert cue.sum() == 6 * 64, 'one band 6 px wide along a border'
        colour = np.argmin(((CUE_COLOURS - img[cue].mean(0)) ** 2).sum(1))
        classes = set(np.unique(label)) - {0}
        assert classes == {1 + colour}
        seen |= classes
        cy, cx = np.nonzero(cue)
        sy, sx = np.nonzero(label)
        cheb = np.maximum(np.abs(sy[:, None] - cy[None]), np.abs(sx[:, None] - cx[None]))
        assert cheb.min() >= gap
    assert seen == {1, 2, 3}


def test_seeded_and_split_streams():
    a, b = make_split(3, size=48, seed=1, gap=12), make_split(3, size=48, seed=1, gap=12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], make_split(3, size=48, seed=1, split='val', gap=12)[0])
    with pytest.raises(ValueError, match="split must be one of \\['train', 'val'\\], got 'test'"):
        make_split(1, split='test')
