"""SyncBatchNorm on CPU (gloo, 2 processes) equals BatchNorm over the concatenated batch: outputs,
input and parameter gradients, running statistics; torch alone refuses CPU inputs."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _reference(x, weight, bias, grad_out):
    bn = torch.nn.BatchNorm2d(x.shape[1], momentum=0.3)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    x = x.clone().requires_grad_(True)
    y = bn(x)
    y.backward(grad_out)
    return y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var


def _worker(rank, port, x, weight, bias, grad_out, out_dir):
    from projects.compat.cpu_ddp import install_cpu_sync_batchnorm

    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    bn = torch.nn.SyncBatchNorm(x.shape[1], momentum=0.3)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    part = slice(rank * 3, rank * 3 + 3)  # rank 0: samples 0-2, rank 1: samples 3-5
    local = x[part].clone().requires_grad_(True)
    try:
        bn(local)
        refused = ''
    except ValueError as err:
        refused = str(err)
    install_cpu_sync_batchnorm()
    y = bn(local)
    y.backward(grad_out[part])
    # parameter gradients are per rank: their sum over ranks is the global batch's (DDP averages
    # them over ranks, and the per-rank losses are means over half the batch)
    wg, bg = bn.weight.grad.clone(), bn.bias.grad.clone()
    dist.all_reduce(wg)
    dist.all_reduce(bg)
    torch.save(dict(y=y.detach(), gx=local.grad, gw=wg, gb=bg, mean=bn.running_mean,
                    var=bn.running_var, refused=refused), os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


@pytest.mark.e2e
def test_cpu_sync_batchnorm_equals_batchnorm_over_the_global_batch(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(6, 4, 5, 5) * 3 + 1
    weight, bias, grad_out = torch.rand(4) + 0.5, torch.randn(4), torch.randn(6, 4, 5, 5)
    mp.start_processes(_worker, args=(_free_port(), x, weight, bias, grad_out, str(tmp_path)),
                       nprocs=2, start_method='fork')
    got = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(2)]
    y, gx, gw, gb, mean, var = _reference(x, weight, bias, grad_out)
    assert 'GPU' in got[0]['refused']  # what torch says without the patch
    torch.testing.assert_close(torch.cat([g['y'] for g in got]), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([g['gx'] for g in got]), gx, rtol=1e-4, atol=1e-5)
    for g in got:
        torch.testing.assert_close(g['gw'], gw, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g['gb'], gb, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g['mean'], mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g['var'], var, rtol=1e-5, atol=1e-6)
