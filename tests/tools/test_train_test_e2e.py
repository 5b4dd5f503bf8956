"""End-to-end: tools/train.py for 2 iterations, --resume to 4, tools/test.py on the result."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from projects.compat.checkpoint import install as install_checkpoint_allowlist, load_checkpoint_file

install_checkpoint_allowlist()

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/eanet/eanet_r18-d8_1xb8-1k_demo-shapes-64x64.py')


def _run(args, cwd, check=True):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes')
    _run([osp.join(ROOT, 'tools/generate_demo_data.py'), '--out', str(out), '--num-train', '4',
          '--num-val', '2', '--size', '32', '--seed', '1'], cwd=ROOT)
    assert len(os.listdir(out / 'images' / 'training')) == 4
    return str(out)


def _options(data_root, max_iters):
    opts = [f'{k}.dataset.data_root={data_root}' for k in
            ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    return ['--cfg-options', *opts, 'data_preprocessor.size=(32,32)', 'model.data_preprocessor.size=(32,32)',
            f'train_cfg.max_iters={max_iters}', 'train_cfg.val_interval=1000',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
            'train_dataloader.batch_size=2']


@pytest.mark.e2e
def test_train_resume_test(tmp_path, data_root):
    work = str(tmp_path / 'work')
    _run([osp.join(ROOT, 'tools/train.py'), CONFIG, '--work-dir', work, *_options(data_root, 2)], cwd=tmp_path)
    first = load_checkpoint_file(osp.join(work, 'iter_2.pth'))
    assert first['meta']['iter'] == 2

    # "crash" after iteration 2, resume from the latest checkpoint of the work dir up to 4
    proc = _run([osp.join(ROOT, 'tools/train.py'), CONFIG, '--work-dir', work, '--resume',
                 *_options(data_root, 4)], cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert re.search(r'resumed epoch: \d+, iter: 2', log), log[-2000:]
    iters = [int(i) for i in re.findall(r'Iter\(train\) \[\s*(\d+)/4\]', log)]
    assert iters == [3, 4], iters  # continued from 2, did not restart
    second = load_checkpoint_file(osp.join(work, 'iter_4.pth'))
    assert second['meta']['iter'] == 4
    # the weights changed during iterations 3-4, i.e. training really went on
    changed = [k for k, v in second['state_dict'].items()
               if v.is_floating_point() and not torch.equal(v, first['state_dict'][k])]
    assert changed

    show, out = str(tmp_path / 'show'), str(tmp_path / 'out')
    proc = _run([osp.join(ROOT, 'tools/test.py'), CONFIG, osp.join(work, 'iter_4.pth'),
                 '--work-dir', work, '--show-dir', show, '--out', out,
                 *_options(data_root, 4)[:4]], cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert 'per class results' in log and '| triangle |' in log.replace('  ', ' ') or 'triangle' in log
    metrics = json.load(open(osp.join(work, 'test_metrics.json')))
    assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc'}
    assert 0.0 <= metrics['mIoU'] <= 100.0
    assert json.load(open(osp.join(out, 'metrics.json'))) == metrics
    pictures = [f for _, _, fs in os.walk(show) for f in fs if f.endswith('.png')]
    assert len(pictures) == 2, pictures  # one overlay per validation image
    predictions = [f for f in os.listdir(out) if f.endswith('.png')]
    assert len(predictions) == 2


@pytest.mark.e2e
def test_crafted_checkpoint_is_refused_by_the_tools(tmp_path, data_root):
    marker = tmp_path / 'marker.txt'
    evil = tmp_path / 'evil.pth'
    code = ('import torch\n'
            'class P:\n'
            f'    def __reduce__(self): return (exec, ("open({str(marker)!r}, \'w\').write(1)",))\n'
            f'torch.save({{"state_dict": {{}}, "meta": {{"p": P()}}}}, {str(evil)!r})\n')
    subprocess.run([sys.executable, '-c', code], check=True)
    proc = _run([osp.join(ROOT, 'tools/test.py'), CONFIG, str(evil), '--work-dir', str(tmp_path / 'w'),
                 *_options(data_root, 4)[:4]], cwd=tmp_path, check=False)
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
def test_mmseg_entry_point_trains_a_project_config(tmp_path, data_root):
    """mmseg's own training path (Config.fromfile + Runner.from_cfg, default_scope mmseg)."""
    work = str(tmp_path / 'w')
    opts = _options(data_root, 1)[1:]
    _run(['-c', MMSEG_TRAIN, CONFIG, work, *opts, 'default_hooks.checkpoint.interval=1'], cwd=tmp_path)
    ckpt = load_checkpoint_file(osp.join(work, 'iter_1.pth'))
    assert ckpt['meta']['iter'] == 1
    assert 'decode_head.attn.op.linear_0.weight' in ckpt['state_dict']


@pytest.mark.e2e
def test_ddp_on_cpu_with_two_processes(tmp_path, data_root):
    """torchrun --nproc_per_node=2 tools/train.py --launcher pytorch: gloo, 2 ranks, one run."""
    work = str(tmp_path / 'ddp')
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
         osp.join(ROOT, 'tools/train.py'), CONFIG, '--launcher', 'pytorch', '--work-dir', work,
         *_options(data_root, 2)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert 'backend gloo, rank 0 of 2' in log and 'backend gloo, rank 1 of 2' in log
    assert load_checkpoint_file(osp.join(work, 'iter_2.pth'))['meta']['iter'] == 2
