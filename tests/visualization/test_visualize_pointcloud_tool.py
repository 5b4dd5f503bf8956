"""tools/visualize_pointcloud.py end to end: files, dataset samples, a checkpoint, batch outputs."""
import glob
import importlib.util
import os.path as osp
import sys

import numpy as np
import pytest
from PIL import Image

from projects.pointcloud.visualization import write_ply

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# the point-cloud CPU demo config (classification of synthetic primitives)
DEMO_CFG = (sorted(glob.glob(osp.join(ROOT, 'configs', 'pct', 'pct-tiny_*synthetic-primitives*.py'))) or [''])[0]


def _tool():
    spec = importlib.util.spec_from_file_location('visualize_pointcloud',
                                                  osp.join(ROOT, 'tools', 'visualize_pointcloud.py'))
    mod = importlib.util.module_from_spec(spec)
    sys.modules['visualize_pointcloud'] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.e2e
def test_tool_on_files(tmp_path, capsys):
    tool = _tool()
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(120, 3))
    gt = (pts[:, 0] > 0).astype(int)
    pred = gt.copy()
    pred[:30] = 1 - pred[:30]
    np.savetxt(tmp_path / 'cloud.txt', np.c_[pts, gt])
    np.save(tmp_path / 'pred.npy', pred)
    res = tool.main([str(tmp_path / 'cloud.txt'), '--label-column', '3', '--pred', str(tmp_path / 'pred.npy'),
                     '--classes', 'left', 'right', '--renderer', 'matplotlib', '--size', '120', '100',
                     '--out', str(tmp_path / 'out')])
    out = capsys.readouterr().out
    assert 'point-cloud renderer: matplotlib' in out and '(accuracy 75.0%)' in out
    assert res[0]['accuracy'] == pytest.approx(0.75)
    assert Image.open(res[0]['image']).size[0] == 3 * 120
    assert sorted(res[0]['ply']) == ['errors', 'ground_truth', 'prediction']
    with pytest.raises(ValueError, match='prediction has 5 labels for 120 points'):
        np.save(tmp_path / 'short.npy', pred[:5])
        tool.main([str(tmp_path / 'cloud.txt'), '--pred', str(tmp_path / 'short.npy'), '--label-column', '3',
                   '--renderer', 'matplotlib', '--out', str(tmp_path / 'out')])


@pytest.mark.e2e
@pytest.mark.skipif(not osp.isfile(DEMO_CFG), reason='point-cloud demo config not present')
def test_tool_on_config_with_checkpoint(tmp_path, capsys):
    """Dataset samples of the demo config, predicted by a (freshly initialised) checkpoint, batch outputs."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(DEMO_CFG)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    ckpt = tmp_path / 'init.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta={}), ckpt)
    tool = _tool()
    res = tool.main(['--config', DEMO_CFG, '--checkpoint', str(ckpt), '--index', '0', '7', '--up', 'z',
                     '--size', '100', '100', '--no-ply', '--out', str(tmp_path / 'out'),
                     '--cfg-options', 'val_dataloader.dataset.num_samples=12'])
    assert [osp.basename(r['image']) for r in res] == ['val_00000.png', 'val_00007.png']
    assert all(r['accuracy'] in (0.0, 1.0) and r['ply'] == {} for r in res)  # one class per cloud
    assert osp.isfile(tmp_path / 'out' / 'contact_sheet.png')
    page = (tmp_path / 'out' / 'index.html').read_text()
    assert 'src="val_00000.png"' in page and 'src="val_00007.png"' in page
    assert 'index page:' in capsys.readouterr().out
    # a file predicted by CONFIG + CHECKPOINT through the config's test pipeline
    write_ply(str(tmp_path / 'cloud.ply'), np.random.default_rng(0).normal(size=(256, 3)))
    (tmp_path / 'label.txt').write_text('2\n')
    res = tool.main([str(tmp_path / 'cloud.ply'), '--labels', str(tmp_path / 'label.txt'), '--config', DEMO_CFG,
                     '--checkpoint', str(ckpt), '--size', '100', '100', '--no-ply', '--out', str(tmp_path / 'f')])
    assert res[0]['accuracy'] in (0.0, 1.0)  # there was a prediction to compare with
    with pytest.raises(IndexError, match=r'--index \[12\] out of range: the val split has 12 samples'):
        tool.main(['--config', DEMO_CFG, '--index', '12', '--out', str(tmp_path / 'out'),
                   '--cfg-options', 'val_dataloader.dataset.num_samples=12'])
