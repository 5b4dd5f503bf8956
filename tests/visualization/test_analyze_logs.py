import importlib.util
import json
import sys
import os.path as osp

import numpy as np
import pytest
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location('analyze_logs', osp.join(ROOT, 'tools', 'analyze_logs.py'))
    mod = importlib.util.module_from_spec(spec)
    sys.modules['analyze_logs'] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _write_log(path, loss_scale=1.0):
    """A tiny mmengine-style scalars.json: 4 training lines and 2 validation lines."""
    lines = []
    for it in range(1, 5):
        lines.append(dict(lr=0.01 / it, data_time=0.01, loss=loss_scale / it, loss_ce=loss_scale / it,
                          time=0.1, iter=it, memory=10, step=it))
        if it % 2 == 0:
            lines.append(dict(aAcc=50.0 + it, mIoU=10.0 * it, mAcc=20.0, data_time=0.01, time=0.1, step=it))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(json.dumps(x) for x in lines) + '\n')
    return str(path)


def test_load_and_plot(tmp_path):
    tool = _tool()
    a = _write_log(tmp_path / 'runA' / '20240101_000000' / 'vis_data' / 'scalars.json')
    b = _write_log(tmp_path / 'runB.json', loss_scale=2.0)
    run = tool.load_log(str(tmp_path / 'runA'))  # a work dir resolves to its scalars.json
    assert run.path == a and len(run.train) == 4 and len(run.val) == 2
    assert run.series('mIoU') == ('val', [2, 4], [20.0, 40.0])
    assert run.series('loss')[2] == [1.0, 0.5, 1 / 3, 0.25]
    assert tool.default_keys([run]) == ['loss', 'lr', 'aAcc', 'mIoU', 'mAcc']

    out = tool.main([a, b, '--legend', 'A', 'B', '--out', str(tmp_path / 'curves.png')])
    img = np.asarray(Image.open(out).convert('RGB'))
    assert img.shape[0] > 200 and img.shape[1] > 600 and (img < 200).any()
    only_loss = tool.main([a, '--keys', 'loss', '--out', str(tmp_path / 'loss.png')])
    assert Image.open(only_loss).size[0] < Image.open(out).size[0]  # one subplot, not five


def test_clear_errors(tmp_path, capsys):
    tool = _tool()
    missing = str(tmp_path / 'nope.json')
    with pytest.raises(SystemExit):
        tool.main([missing])
    assert f'log file not found: {missing}' in capsys.readouterr().err

    bad = tmp_path / 'bad.json'
    bad.write_text('{"loss": 1.0, "step": 1}\n{"loss": 0.5, "step": \n')
    with pytest.raises(ValueError, match=r'bad.json line 2: not valid JSON'):
        tool.load_log(str(bad))
    bad.write_text('{"loss": 1.0, "step": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r'bad.json line 2: expected a JSON object, got list'):
        tool.load_log(str(bad))

    good = _write_log(tmp_path / 'good.json')
    with pytest.raises(SystemExit):
        tool.main([good, '--keys', 'mIOU'])
    assert "['mIOU'] not in any log; available:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([good, '--legend', 'a', 'b'])
    assert '--legend has 2 names for 1 logs' in capsys.readouterr().err


def test_epoch_based_validation_steps(tmp_path):
    """Epoch-based runs log validation at step = epoch; mixed with an iteration-based run they are
    placed at the last logged iteration of that epoch."""
    tool = _tool()
    lines = [dict(lr=0.1, loss=1.0, epoch=1, iter=5, step=5), dict(lr=0.1, loss=0.9, epoch=1, iter=10, step=10),
             dict(OA=0.5, step=1),
             dict(lr=0.1, loss=0.8, epoch=2, iter=15, step=15), dict(lr=0.1, loss=0.7, epoch=2, iter=20, step=20),
             dict(OA=0.75, step=2)]
    path = tmp_path / 'epochs.json'
    path.write_text('\n'.join(json.dumps(x) for x in lines))
    run = tool.load_log(str(path))
    assert run.by_epoch and run.series('OA') == ('val', [1, 2], [0.5, 0.75])
    assert [run.epoch_end_iter(e) for e in (1, 2)] == [10, 20]
    assert tool.default_keys([run]) == ['loss', 'lr', 'OA']
