"""Distributed data-parallel training on CPU (gloo) through mmengine's runner.

mmengine 0.10.7's launchers call ``torch.cuda.set_device`` and wrap the model in DDP with
``device_ids=[LOCAL_RANK]``; both fail without CUDA. :func:`init_cpu_process_group` starts the
process group itself with the gloo backend (the runner then skips its own ``init_dist``), and
:class:`CPUDistributedDataParallel` is mmengine's DDP wrapper without ``device_ids``.

``torch.nn.SyncBatchNorm`` (mmseg's ``SyncBN``, mmengine's ``sync_bn='torch'``) refuses CPU
tensors. :func:`install_cpu_sync_batchnorm` lets it synchronise on CPU: the batch mean and
variance over all ranks come from two differentiable all-reduces (sum, then sum of squared
deviations), so the gradients are those of BatchNorm over the global batch.
"""
from __future__ import annotations

import os
import subprocess

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


def _slurm_env(port=None) -> None:
    """Fill torch.distributed's environment variables from slurm's."""
    node_list = os.environ['SLURM_NODELIST']
    addr = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    os.environ.setdefault('MASTER_ADDR', addr)
    os.environ.setdefault('MASTER_PORT', str(port or 29500))
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def init_cpu_process_group(launcher: str, dist_cfg: dict | None = None) -> None:
    """Start a gloo process group for ``launcher`` ('pytorch': torchrun's env, 'slurm')."""
    if dist.is_initialized():
        return
    dist_cfg = dict(dist_cfg or {})
    backend = dist_cfg.pop('backend', 'gloo')
    if backend != 'gloo':
        backend = 'gloo'  # nccl needs CUDA; gloo is the CPU backend
    if launcher == 'slurm':
        _slurm_env(dist_cfg.pop('port', None))
    elif launcher != 'pytorch':
        raise ValueError(f'CPU distributed training supports launchers "pytorch" and "slurm", '
                         f'got "{launcher}"')
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if key not in os.environ:
            raise RuntimeError(f'--launcher {launcher}: environment variable {key} is not set; '
                               'start the processes with torchrun (or srun for slurm)')
    dist_cfg.pop('port', None)
    dist.init_process_group(backend=backend, rank=int(os.environ['RANK']),
                            world_size=int(os.environ['WORLD_SIZE']), **dist_cfg)
    print(f'CPU distributed training: backend {dist.get_backend()}, rank {dist.get_rank()} of '
          f'{dist.get_world_size()}', flush=True)


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`~mmengine.model.MMDistributedDataParallel` for CPU modules (no ``device_ids``)."""

    def __init__(self, module, device_ids=None, **kwargs):
        kwargs.setdefault('broadcast_buffers', False)
        super().__init__(module=module, device_ids=None, **kwargs)

    def _passing_sync_batchnorm_handle(self, module) -> None:
        """torch's DDP refuses SyncBatchNorm in CPU modules; :func:`install_cpu_sync_batchnorm`
        (installed with the process group) synchronises them on CPU."""


_torch_sync_bn_forward = torch.nn.SyncBatchNorm.forward


def _cpu_sync_batch_norm(bn: torch.nn.SyncBatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Training-mode BatchNorm of ``x`` (B, C, ...) with statistics over every rank's batch."""
    from torch.distributed.nn.functional import all_reduce

    group = bn.process_group or dist.group.WORLD
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    local_count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype)
    total = all_reduce(torch.cat([x.sum(dims), local_count]), group=group)
    count = total[-1]
    mean = total[:-1] / count
    centred = x - mean.view(shape)
    var = all_reduce((centred * centred).sum(dims), group=group) / count
    y = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            unbiased = var.detach() * count / max(float(count) - 1, 1.0)
            bn.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
    return y


def _sync_bn_forward(self, input: torch.Tensor) -> torch.Tensor:
    group = self.process_group or (dist.group.WORLD if dist.is_available() and dist.is_initialized() else None)
    if (input.device.type == 'cpu' and self.training and group is not None
            and dist.get_world_size(group) > 1):
        self._check_input_dim(input)
        return _cpu_sync_batch_norm(self, input)
    return _torch_sync_bn_forward(self, input)


def install_cpu_sync_batchnorm() -> None:
    """Route CPU inputs of ``torch.nn.SyncBatchNorm`` in a multi-process group through
    :func:`_cpu_sync_batch_norm` (CUDA inputs and single-process runs keep torch's path)."""
    torch.nn.SyncBatchNorm.forward = _sync_bn_forward


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Prepare an mmengine config for distributed runs without CUDA; True when it did.

    Starts the gloo process group, lets SyncBN synchronise on CPU and sets
    ``cfg.model_wrapper_cfg`` to the CPU DDP wrapper (keeping ``find_unused_parameters``).
    With CUDA or ``launcher='none'`` it does nothing.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    init_cpu_process_group(launcher, (cfg.get('env_cfg') or {}).get('dist_cfg', {}))
    install_cpu_sync_batchnorm()
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'CPUDistributedDataParallel')
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True
