"""What every entry point (``tools/*.py``) does to turn a config file into runnable objects.

One place for: the runtime patches (pure-PyTorch ``mmcv.ops`` stand-ins when compiled mmcv is
absent; the checkpoint allowlist for ``torch.load(weights_only=True)`` and atomic saving), loading
a config with ``--cfg-options`` and the default work dir, building the runner (CPU DDP, the
checkpoint ``--resume`` continues from, the default hooks of :mod:`projects.hooks`), and building
the model, dataset and collate function of a split through the registries of the config's
``default_scope``.
"""
from __future__ import annotations

import logging
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
    process group for ``cfg.launcher`` (gloo on CPU; see :mod:`projects.compat.cpu_ddp`),
    choosing the checkpoint a resumed run continues from (:func:`resolve_resume`) and adding the
    default hooks of :mod:`projects.hooks` (exact resume, non-finite loss)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from projects.compat.cpu_ddp import setup_cpu_distributed
    from projects.hooks import add_default_hooks
    setup_cpu_distributed(cfg, cfg.get('launcher', 'none'))
    resolve_resume(cfg)
    add_default_hooks(cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def resolve_resume(cfg: Config) -> Optional[str]:
    """With ``cfg.resume``, set ``cfg.load_from`` to a complete checkpoint and return it.

    No ``load_from``: the newest complete checkpoint of the work dir (the one ``last_checkpoint``
    names, else the next older ``iter_N``/``epoch_N``), warning with the names of the newer files
    that are truncated or corrupt; none at all: training starts from scratch, as mmengine does.
    An explicit ``load_from`` that is incomplete raises ``IncompleteCheckpointError``.
    """
    from mmengine.logging import print_log

    from projects.compat.checkpoint import (IncompleteCheckpointError, checkpoint_problem,
                                            latest_complete_checkpoint)
    if not cfg.get('resume', False):
        return None
    if cfg.get('load_from'):
        problem = checkpoint_problem(cfg.load_from)
        if problem is not None:
            newest, _ = latest_complete_checkpoint(osp.dirname(cfg.load_from) or '.')
            hint = f'; the newest complete one beside it is {newest}' if newest else ''
            raise IncompleteCheckpointError(f'--resume {cfg.load_from}: the checkpoint {problem}{hint}')
        return cfg.load_from
    path, skipped = latest_complete_checkpoint(cfg.work_dir)
    for bad, problem in skipped:
        print_log(f'resume: skipping {bad}: it {problem}; '
                  f'{"resuming from " + path if path else "no older complete checkpoint"}',
                  logger='current', level=logging.WARNING)
    if path is None:
        if skipped:
            raise IncompleteCheckpointError(
                f'--resume: no complete checkpoint in {cfg.work_dir} '
                f'({", ".join(b for b, _ in skipped)} are incomplete); remove them to start from scratch')
        print_log(f'resume: no checkpoint in {cfg.work_dir}; training starts from scratch',
                  logger='current', level=logging.WARNING)
        return None
    cfg.load_from = path
    return path


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
