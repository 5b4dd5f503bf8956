"""projects/colors.py: palettes, label colours, the error view, scalar colour maps."""
import numpy as np
import pytest

from projects.colors import (IGNORE_COLOR, RIGHT_COLOR, WRONG_COLOR, class_palette, colorize, correctness,
                             error_colors, scalar_colors)


def test_class_palette():
    pal = class_palette(50)
    assert pal.shape == (50, 3) and pal.dtype == np.uint8 and len({tuple(c) for c in pal}) == 50
    np.testing.assert_array_equal(class_palette(50), pal)  # the same every time
    assert len({tuple(c) for c in class_palette(20)}) == 20
    assert (class_palette(2, palette=[[1, 2, 3], [4, 5, 6]]) == [[1, 2, 3], [4, 5, 6]]).all()
    assert (class_palette(1, palette=[[0.0, 0.5, 1.0]]) == [[0, 128, 255]]).all()  # 0-1 palettes scaled
    assert len(class_palette(3, palette=[[1, 2, 3]])) == 3  # too short a palette: generated colours
    with pytest.raises(ValueError, match='num_classes must be >= 1, got 0'):
        class_palette(0)
    with pytest.raises(ValueError, match=r'list of \(r, g, b\) triples, got shape \(2, 2\)'):
        class_palette(2, palette=[[1, 2], [3, 4]])


def test_colorize_and_correctness():
    pal = [[10, 20, 30], [40, 50, 60]]
    out = colorize(np.array([[0, 1], [-1, 255]]), pal)
    assert out.shape == (2, 2, 3)
    assert [tuple(c) for c in out.reshape(-1, 3)] == [(10, 20, 30), (40, 50, 60), IGNORE_COLOR, IGNORE_COLOR]
    valid, right, acc = correctness(np.array([0, 1, 255]), np.array([0, 0, 1]), 2)
    assert valid.tolist() == [True, True, False] and right.tolist() == [True, False, False] and acc == 0.5
    assert np.isnan(correctness(np.array([255]), np.array([0]), 2)[2])


def test_error_colors():
    gt = np.array([0, 1, 2, 255, 1])
    pred = np.array([0, 2, 2, 0, 1])
    cols, acc = error_colors(gt, pred, num_classes=3)
    assert acc == pytest.approx(3 / 4)  # 255 is ignored
    assert [tuple(c) for c in cols] == [RIGHT_COLOR, WRONG_COLOR, RIGHT_COLOR, IGNORE_COLOR, RIGHT_COLOR]
    with pytest.raises(ValueError, match='3 labels but prediction has 2'):
        error_colors(np.zeros(3), np.zeros(2), 2)


def test_scalar_colors_follow_the_colour_map():
    from matplotlib import colormaps
    v = np.array([[2.0, 4.0], [3.0, 6.0]])
    out = scalar_colors(v, 'viridis')
    expected = np.round(colormaps['viridis']((v - 2.0) / 4.0)[..., :3] * 255)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    # explicit range: values outside are clipped to its ends
    clipped = scalar_colors(np.array([-5.0, 0.5, 9.0]), 'jet', vmin=0.0, vmax=1.0)
    np.testing.assert_array_equal(clipped, np.round(colormaps['jet']([0.0, 0.5, 1.0])[:, :3] * 255))
    # constant values: the low end of the map, no division by zero
    np.testing.assert_array_equal(scalar_colors(np.ones(3)), np.repeat(scalar_colors(np.array([0.0, 1.0]))[:1], 3, 0))
