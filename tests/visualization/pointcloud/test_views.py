"""projects/pointcloud/visualization/views.py: one cloud's picture (views, legend, PLY per view)."""
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from projects.colors import WRONG_COLOR, scalar_colors
from projects.pointcloud.visualization import MatplotlibRenderer, height_colors, label_names, visualize_sample
from tests.visualization.helpers import parse_ply, rgb_of

W, H = 160, 120


def test_visualize_sample_writes_views(tmp_path, two_blobs):
    pts, labels = two_blobs
    pred = labels.copy()
    pred[:10] = 1
    out = visualize_sample(pts, str(tmp_path), 'blobs', gt=labels, pred=pred, class_names=['sphere', 'cube'],
                           renderer=MatplotlibRenderer(), width=W, height=H)
    assert out['accuracy'] == pytest.approx(190 / 200) and out['renderer'] == 'matplotlib'
    assert sorted(out['ply']) == ['errors', 'ground_truth', 'prediction']
    img = np.asarray(Image.open(out['image']).convert('RGB'))
    assert img.shape[1] == 3 * W and img.shape[0] > H  # three panels side by side, titles + legend
    err = parse_ply(out['ply']['errors'])
    assert (rgb_of(err) == WRONG_COLOR).all(1).sum() == 10
    np.testing.assert_array_equal(parse_ply(out['ply']['prediction'])['label'], pred)
    with pytest.raises(ValueError, match='prediction has 5 labels for 200 points'):
        visualize_sample(pts, str(tmp_path), gt=labels, pred=np.zeros(5), renderer=MatplotlibRenderer())
    # a single class label per cloud (classification) colours the whole cloud and is named in the title
    out = visualize_sample(pts, str(tmp_path), 'cls', gt=np.array([1]), pred=np.array([0]),
                           class_names=['sphere', 'cube'], renderer=MatplotlibRenderer(), ply=False)
    assert out['accuracy'] == 0.0 and osp.isfile(out['image']) and out['ply'] == {}


def test_visualize_sample_without_labels_colours_by_height(tmp_path, two_blobs):
    pts, _ = two_blobs
    out = visualize_sample(pts, str(tmp_path), 'plain', renderer=MatplotlibRenderer(), width=W, height=H, up='x')
    assert out['accuracy'] is None and sorted(out['ply']) == ['points']
    np.testing.assert_array_equal(rgb_of(parse_ply(out['ply']['points'])), height_colors(pts, 'x'))
    assert Image.open(out['image']).size[0] == W   # one view
    given = np.tile(np.array([[10, 20, 30]], np.uint8), (len(pts), 1))
    out = visualize_sample(pts, str(tmp_path), 'given', colors=given, renderer=MatplotlibRenderer(), width=W, height=H)
    np.testing.assert_array_equal(rgb_of(parse_ply(out['ply']['points'])), given)


def test_height_colors():
    pts = np.array([[0.0, 5.0, 1.0], [1.0, 7.0, 0.0], [2.0, 6.0, 3.0]])
    np.testing.assert_array_equal(height_colors(pts, 'y'), scalar_colors(np.array([5.0, 7.0, 6.0]), 'viridis'))
    np.testing.assert_array_equal(height_colors(pts, 'z'), scalar_colors(np.array([1.0, 0.0, 3.0]), 'viridis'))


def test_label_names():
    meta = dict(classes=['mug', 'lamp'], category_parts=[[0, 1], [2, 3, 4]])
    assert label_names(meta, per_point=True) == ['mug/0', 'mug/1', 'lamp/0', 'lamp/1', 'lamp/2']
    assert label_names(meta, per_point=False) == ['mug', 'lamp']
    assert label_names(dict(meta, part_names=list('abcde')), per_point=True) == list('abcde')
    assert label_names({}, per_point=False) is None
