import importlib.util
import os.path as osp
import sys

import numpy as np
import pytest
from PIL import Image

from projects.colors import IGNORE_COLOR
from projects.segmentation.visualization import colorize_mask, pixel_accuracy, segmentation_sheet

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLASSES = ['background', 'circle', 'square']
PALETTE = [[0, 0, 0], [220, 20, 60], [0, 160, 60]]


def _row(pred_value=2):
    image = np.full((40, 50, 3), 128, np.uint8)
    gt = np.zeros((40, 50), np.int64)
    gt[10:30, 10:30] = 1
    gt[0] = 255  # ignore index
    pred = gt.copy()
    pred[0] = 0
    pred[10:20, 10:30] = pred_value
    return dict(image=image, gt=gt, pred=pred, name='toy')


def test_colorize_and_accuracy():
    row = _row()
    col = colorize_mask(row['gt'], PALETTE)
    assert tuple(col[0, 0]) == IGNORE_COLOR and tuple(col[15, 15]) == (220, 20, 60) and tuple(col[35, 0]) == (0, 0, 0)
    # 39 valid rows x 50 = 1950 pixels, 10 x 20 of them wrong
    assert pixel_accuracy(row['gt'], row['pred'], 3) == pytest.approx(1 - 200 / 1950)


def test_sheet_has_rows_and_palette_colours(tmp_path):
    one = segmentation_sheet([_row()], CLASSES, PALETTE, str(tmp_path / 'one.png'))
    two = segmentation_sheet([_row(), _row(1)], CLASSES, PALETTE, str(tmp_path / 'two.png'), title='t')
    a = np.asarray(Image.open(one).convert('RGB')).astype(int)
    b = Image.open(two)
    assert b.size[0] == Image.open(one).size[0] and b.size[1] > 1.6 * a.shape[0]  # one row more
    for colour in PALETTE[1:]:
        assert (np.abs(a - colour).sum(-1) < 10).sum() > 100, colour  # gt and prediction drawn in palette colours
    with pytest.raises(ValueError, match=r'row 0: pred has shape \(5, 5\), image is \(40, 50\)'):
        segmentation_sheet([dict(image=np.zeros((40, 50, 3), np.uint8), pred=np.zeros((5, 5)))],
                           CLASSES, PALETTE, str(tmp_path / 'bad.png'))
    with pytest.raises(ValueError, match='3 class names but 2 palette colours'):
        segmentation_sheet([_row()], CLASSES, PALETTE[:2], str(tmp_path / 'bad.png'))


def test_sheet_row_without_ground_truth(tmp_path):
    """A row without ``gt``: a blank middle panel, no accuracy; the grid is three 250 x 200 cells."""
    from projects.sheets import DPI, TITLE_H
    row = dict(_row(), gt=None)
    img = np.asarray(Image.open(segmentation_sheet([row], CLASSES, PALETTE, str(tmp_path / 's.png'))).convert('RGB'))
    assert img.shape[1] == 2 * 10 + 3 * 250 + 2 * 6   # margins, cells of 200 px height at the 5:4 aspect, gaps
    y0 = round(DPI * TITLE_H)
    middle = img[y0 + 5:y0 + 195, 10 + 256 + 5:10 + 256 + 245]
    assert (middle == 255).all()
    right = img[y0 + 5:y0 + 195, 10 + 512 + 5:10 + 512 + 245].astype(int)
    assert (np.abs(right - PALETTE[2]).sum(-1) < 10).sum() > 1000   # the prediction's square class


DEMO_CFG = osp.join(ROOT, 'configs', 'eanet', 'eanet_r18-d8_1xb8-1k_demo-shapes-64x64.py')


@pytest.mark.e2e
@pytest.mark.skipif(not osp.isfile(DEMO_CFG), reason='segmentation demo config not present')
def test_visualize_segmentation_tool(tmp_path, capsys):
    """The tool builds model + dataset from the demo config, loads a checkpoint and writes the sheet."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import projects.segmentation  # noqa: F401
    from projects.segmentation.demo_shapes import generate
    data = tmp_path / 'shapes'
    generate(str(data), 2, 3, 64, 0)
    cfg = Config.fromfile(DEMO_CFG)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'init.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)

    spec = importlib.util.spec_from_file_location('visualize_segmentation',
                                                  osp.join(ROOT, 'tools', 'visualize_segmentation.py'))
    tool = importlib.util.module_from_spec(spec)
    sys.modules['visualize_segmentation'] = tool
    spec.loader.exec_module(tool)
    out = tool.main([DEMO_CFG, str(ckpt), '--out', str(tmp_path / 'vis'), '--num', '2', '--panel-size', '64',
                     '--cfg-options', f'val_dataloader.dataset.data_root={data}'])
    assert out == str(tmp_path / 'vis' / 'segmentation_sheet.png') and osp.isfile(out)
    assert 'segmentation sheet (2 images)' in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match='checkpoint file not found: .*missing.pth'):
        tool.main([DEMO_CFG, str(tmp_path / 'missing.pth'), '--out', str(tmp_path)])
