import os
import os.path as osp

import pytest

from .common import ROOT, SEG_CONFIG, SEG_EVERY, SEG_ITERS, SEG_KILL, child_config, run, seg_options, train


@pytest.fixture(scope='session')
def demo_shapes(tmp_path_factory):
    """A tiny DemoShapes dataset (8 training, 2 validation images of 32 x 32) in ADE20K layout."""
    out = tmp_path_factory.mktemp('shapes')
    run([osp.join(ROOT, 'tools/generate_demo_data.py'), '--out', str(out), '--num-train', '8',
         '--num-val', '2', '--size', '32', '--seed', '1'], cwd=ROOT)
    assert len(os.listdir(out / 'images' / 'training')) == 8
    return str(out)


@pytest.fixture(scope='session')
def seg_runs(tmp_path_factory, demo_shapes):
    """The segmentation demo config: an uninterrupted run, a run killed after iteration 5 (after the checkpoint and the
    validation of iteration 3), and its --resume."""
    tmp = tmp_path_factory.mktemp('seg_resume')
    opts = seg_options(demo_shapes, SEG_ITERS, SEG_EVERY) + ['train_cfg.val_interval=3']
    full = train(SEG_CONFIG, tmp / 'full', *opts)
    killer = child_config(tmp / 'kill.py', SEG_CONFIG, f"custom_hooks = [dict(type='KillAtIterHook', at={SEG_KILL})]")
    killed = train(killer, tmp / 'cut', *opts, check=False)
    resumed = train(SEG_CONFIG, tmp / 'cut', *opts, resume=True)
    return dict(tmp=tmp, opts=opts, full=full, killed=killed, resumed=resumed)
