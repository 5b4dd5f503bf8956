"""Distributed data-parallel training on CPU (gloo) through mmengine's runner.

mmengine 0.10.7's launchers call ``torch.cuda.set_device`` and wrap the model in DDP with
``device_ids=[LOCAL_RANK]``; both fail without CUDA. :func:`init_cpu_process_group` starts the
process group itself with the gloo backend (the runner then skips its own ``init_dist``), and
:class:`CPUDistributedDataParallel` is mmengine's DDP wrapper without ``device_ids``.
"""
from __future__ import annotations

import os
import subprocess

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


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Prepare an mmengine config for distributed runs without CUDA; True when it did.

    Starts the gloo process group and sets ``cfg.model_wrapper_cfg`` to the CPU DDP wrapper
    (keeping ``find_unused_parameters``). With CUDA or ``launcher='none'`` it does nothing.
    """
    import torch

    if launcher == 'none' or torch.cuda.is_available():
        return False
    init_cpu_process_group(launcher, (cfg.get('env_cfg') or {}).get('dist_cfg', {}))
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'CPUDistributedDataParallel')
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True
