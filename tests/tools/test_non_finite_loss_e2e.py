"""A NaN in the loss (the inputs of iteration 3 poisoned) stops tools/train.py with one line naming
the iteration, the non-finite loss terms and the last good checkpoint; ``action='skip'`` drops
that step instead (weights, BatchNorm statistics and optimizer state as after iteration 2)."""
import pytest
import torch

from .common import SEG_CONFIG, child_config, load_checkpoint_file, seg_options, train

POISON = "custom_hooks = [dict(type='PoisonInputsAtIterHook', at=3)]"


@pytest.mark.e2e
def test_nan_loss_stops_with_iteration_terms_and_last_checkpoint(tmp_path, demo_shapes):
    config = child_config(tmp_path / 'nan.py', SEG_CONFIG, POISON)
    proc = train(config, tmp_path / 'w', *seg_options(demo_shapes, 4, checkpoint_interval=2), check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]
    assert 'Traceback' not in log, log[-3000:]
    line = next(ln for ln in log.splitlines() if 'NonFiniteLossError' in ln)
    assert 'Non-finite loss at iteration 3: decode.loss_ce=nan, aux.loss_ce=nan' in line, line
    assert f'the last good checkpoint is {tmp_path / "w" / "iter_2.pth"}' in line, line
    assert 'default_hooks.non_finite_loss.action=skip' in line
    assert not (tmp_path / 'w' / 'iter_4.pth').exists()  # nothing trained past the bad step


@pytest.mark.e2e
def test_nan_loss_step_is_skipped_on_request(tmp_path, demo_shapes):
    config = child_config(tmp_path / 'nan.py', SEG_CONFIG, POISON)
    proc = train(config, tmp_path / 'w', *seg_options(demo_shapes, 4, checkpoint_interval=1),
                 'default_hooks.non_finite_loss.action=skip', 'default_hooks.checkpoint.max_keep_ckpts=-1')
    log = proc.stdout + proc.stderr
    assert 'Non-finite loss at iteration 3: decode.loss_ce=nan, aux.loss_ce=nan; step skipped (1 skipped so far)' in log
    second, third, fourth = (load_checkpoint_file(tmp_path / 'w' / f'iter_{i}.pth') for i in (2, 3, 4))
    for key, value in second['state_dict'].items():  # parameters and buffers (BN statistics) kept
        assert torch.equal(third['state_dict'][key], value), key
    assert third['optimizer']['state'].keys() == second['optimizer']['state'].keys()
    exp_avg = lambda ckpt: ckpt['optimizer']['state'][0]['exp_avg']  # noqa: E731
    assert torch.equal(exp_avg(third), exp_avg(second))
    assert all(torch.isfinite(v).all() for v in fourth['state_dict'].values() if v.is_floating_point())
    assert not torch.equal(exp_avg(fourth), exp_avg(third))  # training went on after the skip
