"""What the end-to-end tests of tools/ share: running a tool as a user would, tiny options for the
two demo configs, child configs that add the test hooks of :mod:`tests.tools.hooks_for_tests`,
and comparing checkpoints."""
import os
import os.path as osp
import subprocess
import sys

import torch

from projects.compat.checkpoint import install as install_checkpoint_allowlist, load_checkpoint_file

install_checkpoint_allowlist()

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_CONFIG = osp.join(ROOT, 'configs/eanet/eanet_r18-d8_1xb8-1k_demo-shapes-64x64.py')
PC_CONFIG = osp.join(ROOT, 'configs/pct/pct-tiny_1xb16-8e_synthetic-primitives-256.py')
# the kill-and-resume runs of the segmentation demo: checkpoints at 3, 6, 8 (the last), killed after 5
SEG_ITERS, SEG_EVERY, SEG_KILL = 8, 3, 5
# the point-cloud demo at 64 points (two neighbour stages of 16 and 8 centres): for load_config and
# as --cfg-options
PC_TINY_OPTIONS = {'train_dataloader.dataset.num_points': 64, 'val_dataloader.dataset.num_points': 64,
                   'model.neighbor_stages': [[16, 4, 64], [8, 4, 64]]}
PC_TINY = [f'{k}={v}'.replace(' ', '') for k, v in PC_TINY_OPTIONS.items()]


def env() -> dict:
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')


def run(args, cwd, check=True, timeout=300) -> subprocess.CompletedProcess:
    """``python *args`` in ``cwd``; on ``check``, a non-zero exit fails with the log's tail."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


def train(config, work, *options, launcher_procs=0, check=True, resume=False):
    """tools/train.py (under torchrun with ``launcher_procs`` processes when > 0)."""
    args = [osp.join(ROOT, 'tools/train.py'), str(config), '--work-dir', str(work)]
    if resume:
        args.append('--resume')
    if options:
        args += ['--cfg-options', *options]
    if launcher_procs:
        args = ['-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={launcher_procs}',
                *args, '--launcher', 'pytorch']
    return run(args, cwd=ROOT, check=check)


def seg_options(data_root, max_iters, checkpoint_interval=1000, batch_size=2):
    opts = [f'{k}.dataset.data_root={data_root}' for k in
            ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    return opts + ['model.data_preprocessor.size=(32,32)', f'train_cfg.max_iters={max_iters}',
                   'train_cfg.val_interval=1000', f'default_hooks.checkpoint.interval={checkpoint_interval}',
                   'default_hooks.logger.interval=1', f'train_dataloader.batch_size={batch_size}']


def child_config(path, base, body: str, imports=('projects.segmentation',)) -> str:
    """Write ``path``: a config inheriting ``base`` that imports the test hooks, plus ``body``."""
    modules = [*imports, 'tests.tools.hooks_for_tests']
    with open(path, 'w') as f:
        f.write(f'_base_ = [{str(base)!r}]\n'
                f'custom_imports = dict(imports={modules!r}, allow_failed_imports=False)\n{body}\n')
    return str(path)


def max_weight_difference(a: str, b: str) -> float:
    """Largest absolute difference between the floating-point weights of two checkpoints."""
    sa, sb = load_checkpoint_file(a)['state_dict'], load_checkpoint_file(b)['state_dict']
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max())
               for k in sa if sa[k].is_floating_point())
