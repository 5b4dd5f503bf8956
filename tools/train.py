"""Train a model from an mmengine config (segmentation, point clouds, any project of the repo).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--cfg-options key=value ...] [--launcher none|pytorch|slurm]

The registry scope comes from the config's ``default_scope`` and its ``custom_imports``;
nothing here is specific to one task. ``--resume`` without a path resumes from the newest
complete checkpoint in the work dir (the one ``last_checkpoint`` names; if that file is truncated,
the previous one, with a warning naming both); with a path, from that file. A resumed run ends
with the same weights as an uninterrupted one (``ExactResumeHook``, ``projects/hooks.py``).
Checkpoints are written atomically and load with ``torch.load(weights_only=True)`` and an
allowlist (``projects/compat/checkpoint.py``).

A NaN/Inf loss (``NonFiniteLossHook``), a bad data file (``BadSampleError``) or an incomplete
checkpoint ends the run with exit status 1 and one error line naming what went wrong.

Distributed: ``torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch``; without
CUDA the processes use the gloo backend.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mmengine.config import Config, DictAction  # noqa: E402

from projects.runtime import build_runner, load_config  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model from an mmengine config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where to save logs and checkpoints '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint of the work dir '
                        'when no path is given')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision training')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config entries, e.g. train_cfg.max_iters=100 '
                        'model.pretrained=/path/to/weights.pth')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args) -> Config:
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        from mmengine.device import is_cuda_available, is_mlu_available, is_npu_available

        if not (is_cuda_available() or is_npu_available() or is_mlu_available()):
            raise RuntimeError('--amp needs a CUDA, NPU or MLU device (mmengine\'s AmpOptimWrapper '
                               'has no CPU mode); run without --amp on this machine')
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper == 'AmpOptimWrapper':
            print('AMP is already enabled in the config.')
        else:
            if optim_wrapper != 'OptimWrapper':
                raise ValueError(f'--amp needs optim_wrapper.type "OptimWrapper", the config has '
                                 f'"{optim_wrapper}"')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint "{args.resume}" does not exist')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def _one_line(err: Exception) -> str:
    """The error's own message (a DataLoader worker wraps it in the worker's traceback)."""
    text = str(err).strip()
    if 'Original Traceback' in text:
        text = text.splitlines()[-1].split(': ', 1)[-1]
    return f'{type(err).__name__}: {text}'


def main(argv=None):
    from projects.bad_data import BadSampleError
    from projects.compat.checkpoint import IncompleteCheckpointError
    from projects.hooks import NonFiniteLossError

    args = parse_args(argv)
    cfg = build_cfg(args)
    try:
        build_runner(cfg).train()
    except (NonFiniteLossError, BadSampleError, IncompleteCheckpointError) as err:
        print(f'ERROR {_one_line(err)}', file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == '__main__':
    main()
