"""End-to-end: tools/test.py on a trained (resumed) checkpoint; crafted checkpoints refused by the
tools; mmseg's own entry point trains a project config. (Kill-and-resume: test_resume_e2e.py;
DDP: test_ddp_equals_single.py; NaN losses: test_non_finite_loss_e2e.py.)"""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from .common import ROOT, SEG_CONFIG, SEG_ITERS, load_checkpoint_file, run, seg_options


@pytest.mark.e2e
def test_tools_test_on_the_resumed_checkpoint(tmp_path, seg_runs, demo_shapes):
    ckpt = seg_runs['tmp'] / 'cut' / f'iter_{SEG_ITERS}.pth'
    work, show, out = tmp_path / 'work', tmp_path / 'show', tmp_path / 'out'
    proc = run([osp.join(ROOT, 'tools/test.py'), SEG_CONFIG, str(ckpt), '--work-dir', str(work),
                '--show-dir', str(show), '--out', str(out), '--cfg-options',
                *seg_options(demo_shapes, SEG_ITERS)[:4]], cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert 'per class results' in log
    for name in ('background', 'circle', 'square', 'triangle'):  # one table row per class
        assert re.search(rf'^\|\s*{name}\s*\|', log, flags=re.M), name
    metrics = json.load(open(work / 'test_metrics.json'))
    assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc'}
    assert 0.0 <= metrics['mIoU'] <= 100.0
    assert json.load(open(out / 'metrics.json')) == metrics
    pictures = [f for _, _, fs in os.walk(show) for f in fs if f.endswith('.png')]
    assert len(pictures) == 2, pictures  # one overlay per validation image
    predictions = [f for f in os.listdir(out) if f.endswith('.png')]
    assert len(predictions) == 2


@pytest.mark.e2e
def test_crafted_checkpoint_is_refused_by_the_tools(tmp_path, demo_shapes):
    marker = tmp_path / 'marker.txt'
    evil = tmp_path / 'evil.pth'
    code = ('import torch\n'
            'class P:\n'
            f'    def __reduce__(self): return (exec, ("open({str(marker)!r}, \'w\').write(1)",))\n'
            f'torch.save({{"state_dict": {{}}, "meta": {{"p": P()}}}}, {str(evil)!r})\n')
    subprocess.run([sys.executable, '-c', code], check=True)
    proc = run([osp.join(ROOT, 'tools/test.py'), SEG_CONFIG, str(evil), '--work-dir', str(tmp_path / 'w'),
                '--cfg-options', *seg_options(demo_shapes, 4)[:4]], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert 'CheckpointRefusedError' in proc.stderr and str(evil) in proc.stderr
    assert 'builtins.exec' in proc.stderr
    assert not marker.exists()


MMSEG_TRAIN = '''
import sys
from mmengine.config import Config
from mmengine.runner import Runner
from mmseg.registry import RUNNERS  # noqa: F401  (as mmseg's tools/train.py)
cfg = Config.fromfile(sys.argv[1])  # custom_imports=['projects.segmentation'] happens here
cfg.work_dir = sys.argv[2]
cfg.merge_from_dict({k: eval(v) if v[:1] in '(0123456789' else v
                     for k, v in (a.split('=', 1) for a in sys.argv[3:])})
runner = Runner.from_cfg(cfg)
runner.train()
'''


@pytest.mark.e2e
def test_mmseg_entry_point_trains_a_project_config(tmp_path, demo_shapes):
    """mmseg's own training path (Config.fromfile + Runner.from_cfg, default_scope mmseg)."""
    work = str(tmp_path / 'w')
    run(['-c', MMSEG_TRAIN, SEG_CONFIG, work, *seg_options(demo_shapes, 1, checkpoint_interval=1)],
        cwd=tmp_path)
    ckpt = load_checkpoint_file(osp.join(work, 'iter_1.pth'))
    assert ckpt['meta']['iter'] == 1
    assert 'decode_head.attn.op.linear_0.weight' in ckpt['state_dict']
