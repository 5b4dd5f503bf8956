"""Resume equals never stopping: a run SIGKILLed between checkpoints and resumed with --resume ends
with the weights of an uninterrupted run (segmentation: IterBasedTrainLoop, validation between a
checkpoint and the kill; point clouds: EpochBasedTrainLoop, best-checkpoint saves), and a
truncated newest checkpoint makes --resume fall back to the previous one."""
import os
import os.path as osp
import re
import shutil
import signal

import pytest

from .common import (PC_CONFIG, PC_TINY, SEG_CONFIG, SEG_ITERS, SEG_KILL, child_config,
                     load_checkpoint_file, max_weight_difference, train)

PC = [*PC_TINY, 'train_dataloader.dataset.num_samples=24', 'train_dataloader.batch_size=6',
      'val_dataloader.dataset.num_samples=8', 'train_cfg.max_epochs=4', 'train_cfg.val_interval=1',
      'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1']
PC_KILL = 10                                  # 4 iterations per epoch: killed inside epoch 3


def _losses(log: str, first: int) -> dict:
    """Iteration -> the logged loss fields of ``Iter(train) [i/N]`` lines from ``first`` on."""
    out = {}
    for it, fields in re.findall(r'Iter\(train\) \[\s*(\d+)/\d+\].*?((?:\s+\S*loss\S*: \S+)+)', log):
        if int(it) >= first:
            out[int(it)] = re.findall(r'(\S*loss\S*): (\S+)', fields)
    return out


@pytest.mark.e2e
def test_segmentation_resume_after_sigkill_equals_uninterrupted(seg_runs):
    tmp, killed, resumed = seg_runs['tmp'], seg_runs['killed'], seg_runs['resumed']
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:]
    assert f'SIGKILL after iteration {SEG_KILL}' in killed.stdout
    log = resumed.stdout + resumed.stderr
    assert re.search(r'resumed epoch: 0, iter: 3\b', log), log[-2000:]
    iters = [int(i) for i in re.findall(rf'Iter\(train\) \[\s*(\d+)/{SEG_ITERS}\]', log)]
    assert iters == list(range(4, SEG_ITERS + 1)), iters
    # the logged losses after the resume are the uninterrupted run's, iteration by iteration
    full_log = seg_runs['full'].stdout + seg_runs['full'].stderr
    assert _losses(log, 4) == _losses(full_log, 4) != {}
    diff = max_weight_difference(tmp / 'full' / 'iter_8.pth', tmp / 'cut' / 'iter_8.pth')
    assert diff <= 1e-6, f'resumed weights differ from the uninterrupted run by {diff}'


@pytest.mark.e2e
def test_checkpoints_carry_rng_states_and_last_checkpoint_names_a_complete_file(seg_runs):
    tmp = seg_runs['tmp']
    ckpt = load_checkpoint_file(tmp / 'full' / 'iter_8.pth')
    state = ckpt['resume_state']
    assert state['world_size'] == 1 and state['sampler_seed'] == 0
    assert set(state['rng'][0]) >= {'torch', 'numpy', 'python'}
    # complete files only: no temporary file left, last_checkpoint names the newest
    names = sorted(os.listdir(tmp / 'full'))
    assert not [n for n in names if n.endswith('.tmp')], names
    assert (tmp / 'full' / 'last_checkpoint').read_text().strip() == str(tmp / 'full' / 'iter_8.pth')
    assert [n for n in names if n.endswith('.pth')] == ['iter_6.pth', 'iter_8.pth']  # max_keep_ckpts=2


@pytest.mark.e2e
def test_truncated_newest_checkpoint_falls_back_to_the_previous(seg_runs, tmp_path):
    work = tmp_path / 'cut'
    shutil.copytree(seg_runs['tmp'] / 'cut', work)
    pointer = work / 'last_checkpoint'
    pointer.write_text(str(work / 'iter_8.pth'))
    newest = work / 'iter_8.pth'
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 2])  # what a kill during a plain (non-atomic) save leaves
    proc = train(SEG_CONFIG, work, *seg_runs['opts'], resume=True)
    log = proc.stdout + proc.stderr
    assert re.search(rf'resume: skipping {re.escape(str(newest))}: it is truncated or corrupt .*; '
                     rf'resuming from {re.escape(str(work / "iter_6.pth"))}', log), log[-3000:]
    assert re.search(r'resumed epoch: 0, iter: 6\b', log)
    # the fallback resume is exact as well: iterations 7-8 again, same weights
    assert max_weight_difference(seg_runs['tmp'] / 'full' / 'iter_8.pth', newest) <= 1e-6


@pytest.mark.e2e
@pytest.mark.slow
def test_pointcloud_resume_after_sigkill_equals_uninterrupted(tmp_path):
    full = train(PC_CONFIG, tmp_path / 'full', *PC)
    killer = child_config(tmp_path / 'kill.py', PC_CONFIG, f"custom_hooks = [dict(type='KillAtIterHook', at={PC_KILL})]",
                          imports=('projects.pointcloud',))
    killed = train(killer, tmp_path / 'cut', *PC, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:]
    resumed = train(PC_CONFIG, tmp_path / 'cut', *PC, resume=True)
    log = resumed.stdout + resumed.stderr
    assert re.search(r'resumed epoch: 2, iter: 8\b', log), log[-2000:]
    assert 'Epoch(train) [3][1/4]' in log and 'Epoch(train) [1]' not in log
    full_log = full.stdout + full.stderr
    assert re.findall(r'Epoch\(val\) \[4\]\[\d+/\d+\]\s+(OA: \S+)', log) == \
        re.findall(r'Epoch\(val\) \[4\]\[\d+/\d+\]\s+(OA: \S+)', full_log) != []
    diff = max_weight_difference(osp.join(tmp_path, 'full', 'epoch_4.pth'), osp.join(tmp_path, 'cut', 'epoch_4.pth'))
    assert diff <= 1e-6, f'resumed weights differ from the uninterrupted run by {diff}'
