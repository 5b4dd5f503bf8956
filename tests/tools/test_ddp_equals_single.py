"""DDP equals one process: ``torchrun --nproc_per_node=2 tools/train.py --launcher pytorch`` (gloo,
CPU) computes, at its first iteration, the gradients of a single process on the same global batch
(twice the per-rank batch; the samplers split one shuffled order between the ranks).

BatchNorm statistics are per rank unless synchronised, so both configs run with ``sync_bn='torch'``
(mmengine converts every BatchNorm to SyncBatchNorm in DDP, reverts it in one process; mmseg's
``norm_cfg=dict(type='SyncBN')`` is the same layer), which ``projects.compat.cpu_ddp`` makes work on
CPU. Random augmentation and dropout are off: each rank would draw its own.
"""
import pytest
import torch

from .common import PC_CONFIG, PC_TINY, SEG_CONFIG, child_config, load_checkpoint_file, seg_options, train


def _assert_same_gradients(single: dict, ddp: dict) -> None:
    assert single.keys() == ddp.keys() and single
    scale = max(float(g.abs().max()) for g in single.values())
    for name, g in single.items():
        err = float((ddp[name] - g).abs().max())
        # relative to the tensor's own size, with a floor for the (mathematically zero) biases
        # that feed a norm layer; measured: 4e-6 (segmentation), 4e-5 (point clouds)
        assert err <= 1e-3 * float(g.abs().max()) + 1e-6 * scale, \
            f'{name}: DDP gradient differs by {err:.3g} (largest entry {float(g.abs().max()):.3g})'


def _first_step_gradients(tmp_path, base, body, imports, options, batch_size):
    grads = {}
    for procs in (1, 2):
        work = tmp_path / f'procs{procs}'
        work.mkdir()
        config = child_config(work / 'config.py', base, body + f"\ncustom_hooks = [dict(type='DumpGradsHook', "
                              f"out={str(work / 'grads.pth')!r})]\nsync_bn = 'torch'", imports=imports)
        proc = train(config, work, *options, f'train_dataloader.batch_size={batch_size * 2 // procs}',
                     launcher_procs=procs if procs > 1 else 0)
        if procs > 1:
            log = proc.stdout + proc.stderr
            assert 'backend gloo, rank 0 of 2' in log and 'backend gloo, rank 1 of 2' in log
            # rank 0 writes the checkpoint with the RNG states of both ranks (ExactResumeHook)
            ckpt = load_checkpoint_file(work / ('iter_1.pth' if (work / 'iter_1.pth').exists() else 'epoch_1.pth'))
            states = ckpt['resume_state']['rng']
            assert ckpt['resume_state']['world_size'] == 2 and len(states) == 2 and None not in states
        grads[procs] = torch.load(work / 'grads.pth', weights_only=True)
    return grads[1], grads[2]


@pytest.mark.e2e
@pytest.mark.slow
def test_segmentation_ddp_gradients_equal_one_process(tmp_path, demo_shapes):
    body = ('train_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))\n'
            'model = dict(decode_head=dict(dropout_ratio=0.0), auxiliary_head=dict(dropout_ratio=0.0))')
    single, ddp = _first_step_gradients(tmp_path, SEG_CONFIG, body, ('projects.segmentation',),
                                        seg_options(demo_shapes, 1), batch_size=2)
    assert any('bn' in k for k in single)  # BatchNorm layers are part of the comparison
    _assert_same_gradients(single, ddp)


@pytest.mark.e2e
@pytest.mark.slow
def test_pointcloud_ddp_gradients_equal_one_process(tmp_path):
    body = ('train_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}, num_samples=8))\n'
            'model = dict(dropout=0.0)\ntrain_cfg = dict(max_epochs=1, val_interval=100)')
    single, ddp = _first_step_gradients(tmp_path, PC_CONFIG, body, ('projects.pointcloud',), PC_TINY,
                                        batch_size=4)
    assert any('norm' in k for k in single)
    _assert_same_gradients(single, ddp)
