"""tools/misc/print_config.py, tools/analysis_tools/get_flops.py and confusion_matrix.py."""
import csv
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from projects.pointcloud.predictions import save_prediction
from tests.tools.helpers import CLS_CONFIG, PART_CONFIG, ROOT, SEG_CONFIG, demo_shapes, load_tool, png_is_drawn

FLOPS = load_tool('analysis_tools/get_flops.py')
CONFUSION = load_tool('analysis_tools/confusion_matrix.py')


def test_print_config_resolves_bases_and_options(tmp_path, capsys):
    tool = load_tool('misc/print_config.py')
    dump = tmp_path / 'resolved.py'
    text = tool.main([os.path.join(ROOT, CLS_CONFIG), '--cfg-options', 'model.attn.type=ExternalAttention',
                      'train_cfg.max_epochs=3', '--dump', str(dump)])
    out = capsys.readouterr().out
    assert text in out
    assert "attn=dict(type='ExternalAttention')" in text           # the override
    assert "default_scope = 'pointcloud'" in text                   # from _base_/default_runtime.py
    assert "work_dir = './work_dirs/pct-tiny_1xb16-8e_synthetic-primitives-256'" in text
    from mmengine.config import Config
    cfg = Config.fromfile(str(dump))
    assert '_base_' not in open(dump).read() and cfg.train_cfg.max_epochs == 3
    assert cfg.model.attn.type == 'ExternalAttention' and cfg.tta_model.type == 'PointCloudTTAModel'
    with pytest.raises(ValueError, match=r'--dump: .*\.txt must end in \.py, \.json or \.yaml'):
        tool.main([os.path.join(ROOT, CLS_CONFIG), '--dump', str(tmp_path / 'x.txt')])


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):                                       # x (1, 3, 8, 8)
        y = self.conv(x).flatten(2).transpose(1, 2)              # (1, 64, 8)
        q = y.view(1, 64, 2, 4).transpose(1, 2)                  # (1, 2 heads, 64, 4)
        a = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        return self.fc(a.transpose(1, 2).reshape(1, 64, 8))


def test_flop_count_against_a_hand_count():
    res = FLOPS.count(Tiny().eval(), (torch.randn(1, 3, 8, 8),))
    conv = 8 * 8 * 8 * 3 * 3 * 3          # output pixels x out channels x (in channels x 3 x 3)
    sdpa = 2 * 64 * 64 * (4 + 4)           # heads x L x S x (E for the scores + Ev for the sum)
    linear = 64 * 8 * 4                    # tokens x in x out
    assert res['flops'] == conv + sdpa + linear
    assert res['params'] == (3 * 9 * 8 + 8) + (8 * 4 + 4)
    assert 'aten::scaled_dot_product_attention' not in res['not_counted']


@pytest.mark.parametrize('config, shape, expect', [
    (SEG_CONFIG, [], 'image (3, 64, 64)'),                       # crop_size of the config
    (SEG_CONFIG, ['--shape', '32', '48'], 'image (3, 32, 48)'),
    (CLS_CONFIG, [], '256 points x 3 channels'),                  # num_points of the config
    (PART_CONFIG, ['--shape', '128'], '128 points x 3 channels'),
])
def test_get_flops_on_whole_models(config, shape, expect, capsys):
    res = FLOPS.main([os.path.join(ROOT, config), *shape])
    out = capsys.readouterr().out
    assert res['input'] == expect and expect in out and 'FLOPs:' in out and 'params:' in out
    from projects.runtime import build_model, load_config
    model = build_model(load_config(os.path.join(ROOT, config)))
    aux = getattr(model, 'auxiliary_head', None)
    expected = sum(p.numel() for p in model.parameters()) - (sum(p.numel() for p in aux.parameters()) if aux else 0)
    assert res['params'] == expected
    assert res['flops'] > res['params']  # every weight is used at least once per input
    if config == CLS_CONFIG:  # kNN of the neighbour embedding has no FLOP rule: listed, not hidden
        assert res['not_counted'].get('aten::topk') and 'aten::topk' in out


def test_get_flops_scales_with_the_input():
    small = FLOPS.main([os.path.join(ROOT, SEG_CONFIG), '--shape', '32'])['flops']
    large = FLOPS.main([os.path.join(ROOT, SEG_CONFIG), '--shape', '64'])['flops']
    assert 3.5 < large / small < 4.5  # a fully convolutional network: FLOPs ~ pixels
    with pytest.raises(ValueError, match='--shape takes one number'):
        FLOPS.main([os.path.join(ROOT, CLS_CONFIG), '--shape', '3', '4'])


def _csv(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0][1:], np.array([[int(v) for v in r[1:]] for r in rows[1:]])


def test_confusion_matrix_of_pointcloud_predictions(tmp_path):
    pred_dir = tmp_path / 'pred'
    # 3 clouds of classes sphere(0), cube(1), sphere(0), predicted cube, cube, sphere
    for i, (p, g) in enumerate([(1, 0), (1, 1), (0, 0)]):
        save_prediction(str(pred_dir / f'{i:05d}.npz'), pred=[p], labels=[g], points=np.zeros((4, 3)))
    res = CONFUSION.main([os.path.join(ROOT, CLS_CONFIG), str(pred_dir), '--out', str(tmp_path / 'cm.png'), '--quiet'])
    assert res['names'] == ['sphere', 'cube', 'cylinder', 'cone', 'torus', 'pyramid']
    expect = np.zeros((6, 6), int)
    expect[0, 1] = expect[1, 1] = expect[0, 0] = 1
    np.testing.assert_array_equal(res['matrix'], expect)
    names, counts = _csv(tmp_path / 'cm.csv')
    assert names == res['names'] and (counts == expect).all()
    assert png_is_drawn(res['image'])

    # part labels get part names built from the categories
    part_dir = tmp_path / 'parts'
    save_prediction(str(part_dir / '00000.npz'), pred=[0, 1, 1, 1], labels=[0, 0, 1, 1], category=[0])
    res = CONFUSION.main([os.path.join(ROOT, PART_CONFIG), str(part_dir), '--out', str(tmp_path / 'p.png'),
                          '--no-normalize', '--quiet'])
    assert res['names'][:3] == ['mushroom/0', 'mushroom/1', 'table/0'] and len(res['names']) == 9
    assert res['matrix'][:2, :2].tolist() == [[1, 1], [0, 2]]


def test_confusion_matrix_of_segmentation_predictions(tmp_path):
    data = demo_shapes(tmp_path / 'data', num_train=1, num_val=2)
    pred_dir = tmp_path / 'pred'
    pred_dir.mkdir()
    expect = np.zeros((4, 4), int)
    for name in ('00000.png', '00001.png'):
        gt = np.asarray(Image.open(os.path.join(data, 'annotations', 'validation', name)), np.int64)
        pred = gt.copy()
        pred[:4] = 3  # the first four rows predicted "triangle"
        Image.fromarray(pred.astype(np.uint8)).save(pred_dir / name)
        np.add.at(expect, (gt.reshape(-1), pred.reshape(-1)), 1)
    res = CONFUSION.main([os.path.join(ROOT, SEG_CONFIG), str(pred_dir), '--out', str(tmp_path / 'cm.png'),
                          '--cfg-options', f'test_dataloader.dataset.data_root={data}', '--quiet'])
    assert res['names'] == ['background', 'circle', 'square', 'triangle']
    np.testing.assert_array_equal(res['matrix'], expect)
    assert png_is_drawn(res['image'])
    os.remove(pred_dir / '00001.png')
    with pytest.raises(FileNotFoundError, match=r'no prediction .*00001\.png for test image'):
        CONFUSION.main([os.path.join(ROOT, SEG_CONFIG), str(pred_dir), '--out', str(tmp_path / 'x.png'),
                        '--cfg-options', f'test_dataloader.dataset.data_root={data}', '--quiet'])
