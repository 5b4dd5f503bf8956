"""What every entry point (``tools/*.py``) does to turn a config file into runnable objects.

One place for: the runtime patches (pure-PyTorch ``mmcv.ops`` stand-ins when compiled mmcv is
absent; the checkpoint allowlist for ``torch.load(weights_only=True)``), loading a config with
``--cfg-options`` and the default work dir, and building the model, dataset and collate function
of a split through the registries of the config's ``default_scope``.
"""
from __future__ import annotations

import os.path as osp
from functools import partial
from typing import Callable, Optional

from mmengine.config import Config


def install_compat() -> None:
    """Apply the runtime patches (idempotent); see :mod:`projects.compat`."""
    from projects.compat import checkpoint, mmcv_ops
    mmcv_ops.install()
    checkpoint.install()


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: Optional[str] = None) -> Config:
    """Read ``path`` (its ``custom_imports`` register the project), merge ``cfg_options`` and set
    ``work_dir`` (default ``work_dirs/<config name>``) and ``launcher`` when given."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    install_compat()
    cfg = Config.fromfile(path)
    if launcher is not None:
        cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def build_runner(cfg: Config):
    """mmengine's Runner (or the config's ``runner_type``) for ``cfg``, after setting up the
    process group for ``cfg.launcher`` (gloo on CPU; see :mod:`projects.compat.cpu_ddp`)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from projects.compat.cpu_ddp import setup_cpu_distributed
    setup_cpu_distributed(cfg, cfg.get('launcher', 'none'))
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def _scope(cfg: Config) -> None:
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', None))


def _split_cfg(cfg: Config, split: str):
    key = f'{split}_dataloader'
    if key not in cfg or 'dataset' not in cfg[key]:
        raise KeyError(f'{cfg.filename} has no "{key}.dataset" entry (splits it has: '
                       f'{sorted(k[:-len("_dataloader")] for k in cfg if k.endswith("_dataloader"))})')
    return cfg[key]


def build_model(cfg: Config, checkpoint: Optional[str] = None):
    """The config's model in eval mode, with ``checkpoint`` loaded (safely) when given."""
    from mmengine.registry import MODELS
    from mmengine.runner import load_checkpoint
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
    _scope(cfg)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', logger='current')
    return model.eval()


def dataset_cfg(cfg: Config, split: str) -> dict:
    """The ``<split>_dataloader.dataset`` entry (``KeyError`` naming the splits that exist)."""
    return _split_cfg(cfg, split).dataset


def build_dataset(cfg: Config, split: str):
    from mmengine.registry import DATASETS
    _scope(cfg)
    return DATASETS.build(dataset_cfg(cfg, split))


def build_collate(cfg: Config, split: str) -> Callable:
    """The split's ``collate_fn`` (mmengine's ``pseudo_collate`` when the config names none)."""
    from mmengine.registry import FUNCTIONS
    _scope(cfg)
    collate_cfg = dict(_split_cfg(cfg, split).get('collate_fn', dict(type='pseudo_collate')))
    fn = FUNCTIONS.get(collate_cfg.pop('type'))
    return partial(fn, **collate_cfg) if collate_cfg else fn
