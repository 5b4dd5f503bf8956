"""Evaluate a checkpoint with the config's test dataloader and evaluator (any project of the repo).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out DIR]
                         [--cfg-options key=value ...] [--launcher none|pytorch|slurm]

Prints the evaluator's results (for segmentation: mmseg's per-class IoU/Acc table, then mIoU,
mAcc, aAcc) and writes them to ``<work-dir>/test_metrics.json``.

``--show-dir DIR``  turn on the config's ``default_hooks.visualization`` hook for every test
                    sample and save the pictures under DIR (segmentation: prediction overlays).
``--out DIR``       also write the metrics to ``DIR/metrics.json``; an ``IoUMetric`` evaluator
                    additionally saves every predicted label map as a PNG in DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402

from projects.runtime import build_runner, load_config  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where to write logs and test_metrics.json '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--show-dir', help='save visualized predictions in this folder')
    parser.add_argument('--out', help='save metrics (and, for segmentation, predicted label '
                        'maps) in this folder')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config entries, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def turn_on_visualization(cfg: Config, show_dir: str) -> None:
    hooks = cfg.get('default_hooks', {}) or {}
    if 'visualization' not in hooks:
        raise KeyError(f'--show-dir needs a visualization hook in the config ("default_hooks.'
                       f'visualization"); {cfg.filename} has default_hooks {sorted(hooks)}')
    hooks['visualization']['draw'] = True
    hooks['visualization']['interval'] = 1
    if cfg.get('visualizer') is None:
        raise KeyError(f'--show-dir needs a "visualizer" entry in {cfg.filename}')
    cfg.visualizer['save_dir'] = show_dir


def set_output_dir(cfg: Config, out: str) -> None:
    evaluator = cfg.get('test_evaluator')
    for ev in (evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]):
        if isinstance(ev, (dict, ConfigDict)) and str(ev.get('type', '')).split('.')[-1] == 'IoUMetric':
            ev['output_dir'] = out


def build_cfg(args) -> Config:
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint "{args.checkpoint}" does not exist')
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        turn_on_visualization(cfg, args.show_dir)
    if args.out:
        set_output_dir(cfg, args.out)
    return cfg


def _jsonable(metrics: dict) -> dict:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = v if isinstance(v, (str, int, list, dict)) else repr(v)
    return out


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)

    from mmengine.dist import is_main_process
    runner = build_runner(cfg)
    metrics = runner.test()
    if is_main_process():
        text = json.dumps(_jsonable(metrics), indent=2)
        paths = [osp.join(cfg.work_dir, 'test_metrics.json')]
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            paths.append(osp.join(args.out, 'metrics.json'))
        for p in paths:
            with open(p, 'w') as f:
                f.write(text + '\n')
        print(f'metrics written to {", ".join(paths)}')
    return metrics


if __name__ == '__main__':
    main()
