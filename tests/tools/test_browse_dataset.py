"""tools/analysis_tools/browse_dataset.py shows the pipeline's output with the class names, and
tools/visualize_pointcloud.py renders the prediction files of tools/test.py --out."""
import os
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from projects.colors import class_palette, colorize
from projects.pointcloud.predictions import save_prediction
from tests.tools.helpers import CLS_CONFIG, PART_CONFIG, ROOT, SEG_CONFIG, demo_shapes, load_tool, png_is_drawn

BROWSE = load_tool('analysis_tools/browse_dataset.py')


def _spy(target: str):
    """Patch ``target`` with a wrapper that records its calls and still runs it."""
    calls = []
    module, name = target.rsplit('.', 1)
    real = getattr(__import__(module, fromlist=[name]), name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)
    return mock.patch(target, wrapper), calls


def test_point_clouds_after_the_transforms(tmp_path):
    from projects.runtime import build_dataset, load_config
    patch, calls = _spy('projects.pointcloud.visualization.visualize_sample')
    with patch:
        images = BROWSE.main([os.path.join(ROOT, CLS_CONFIG), '--num', '3', '--out', str(tmp_path / 'a'),
                              '--renderer', 'matplotlib', '--quiet'])
    assert [os.path.basename(p) for p in images] == ['train_00000.png', 'train_00001.png', 'train_00002.png']
    assert all(png_is_drawn(p) for p in images) and png_is_drawn(str(tmp_path / 'a' / 'contact_sheet.png'))
    raw = build_dataset(load_config(os.path.join(ROOT, CLS_CONFIG)), 'train')
    for i, (args, kwargs) in enumerate(calls):
        assert kwargs['class_names'] == ['sphere', 'cube', 'cylinder', 'cone', 'torus', 'pyramid']
        assert kwargs['gt'].tolist() == [i % 6]
        points = args[0]
        assert points.shape == (256, 3)
        # the pipeline rescaled and rotated the cloud: same size, other coordinates
        assert not np.allclose(np.sort(points, 0), np.sort(raw.get_sample(i)['pos'], 0), atol=1e-3)
    # the same seed draws the same transforms
    again = BROWSE.main([os.path.join(ROOT, CLS_CONFIG), '--index', '1', '--out', str(tmp_path / 'b'),
                         '--renderer', 'matplotlib', '--quiet'])
    assert np.array_equal(np.asarray(Image.open(again[0])), np.asarray(Image.open(images[1])))


def test_part_labels_carry_part_names(tmp_path):
    patch, calls = _spy('projects.pointcloud.visualization.visualize_sample')
    with patch:
        BROWSE.main([os.path.join(ROOT, PART_CONFIG), '--index', '2', '--out', str(tmp_path),
                     '--renderer', 'matplotlib', '--quiet'])
    (args, kwargs), = calls
    assert kwargs['class_names'][4:7] == ['lamp/0', 'lamp/1', 'lamp/2']
    assert set(np.unique(kwargs['gt'])) == {4, 5, 6} and kwargs['title'].endswith('lamp')


def test_segmentation_images_with_label_overlays(tmp_path):
    data = demo_shapes(tmp_path / 'data', num_train=2, num_val=2)
    patch, calls = _spy('projects.sheets.compose_grid')
    with patch:
        images = BROWSE.main([os.path.join(ROOT, SEG_CONFIG), '--split', 'val', '--num', '2',
                              '--out', str(tmp_path / 'out'), '--quiet',
                              '--cfg-options', f'val_dataloader.dataset.data_root={data}'])
    assert all(png_is_drawn(p) for p in images)
    classes = ['background', 'circle', 'square', 'triangle']
    palette = class_palette(4, [[0, 0, 0], [220, 20, 60], [0, 160, 60], [30, 80, 230]])
    for i, (args, kwargs) in enumerate(calls[:2]):
        image, overlay, labels = (p.image for p in args[0][0])
        gt = np.asarray(Image.open(os.path.join(data, 'annotations', 'validation', f'{i:05d}.png')))
        rgb = np.asarray(Image.open(os.path.join(data, 'images', 'validation', f'{i:05d}.png')).convert('RGB'))
        assert np.array_equal(image, rgb)                      # the val pipeline leaves the image as it is
        assert np.array_equal(labels, colorize(gt, palette))   # labels in the dataset's palette
        assert [name for name, _ in kwargs['legend']] == [classes[k] for k in np.unique(gt)]
        assert not np.array_equal(overlay, image)


def test_visualize_pointcloud_renders_a_prediction_file(tmp_path):
    tool = load_tool('visualize_pointcloud.py')
    rng = np.random.RandomState(0)
    path = save_prediction(str(tmp_path / '00004.npz'), pred=[2, 2, 3, 3, 3, 2], labels=[2, 2, 3, 3, 2, 2],
                           points=rng.rand(6, 3), category=[1])
    patch, calls = _spy('projects.pointcloud.visualization.visualize_sample')
    with patch:
        res = tool.main([path, '--config', os.path.join(ROOT, PART_CONFIG), '--renderer', 'matplotlib',
                         '--no-ply', '--out', str(tmp_path / 'vis'), '--quiet'])
    (args, kwargs), = calls
    assert kwargs['pred'].tolist() == [2, 2, 3, 3, 3, 2] and kwargs['gt'].tolist() == [2, 2, 3, 3, 2, 2]
    assert kwargs['title'] == '00004  |  table' and kwargs['class_names'][2:4] == ['table/0', 'table/1']
    assert res[0]['accuracy'] == pytest.approx(5 / 6) and png_is_drawn(res[0]['image'])
