"""Evaluate a checkpoint with the config's test dataloader and evaluator (any project of the repo).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out DIR]
                         [--tta [--votes V]] [--cfg-options key=value ...]
                         [--launcher none|pytorch|slurm]

Prints the evaluator's results with their per-class table (segmentation: IoU/Acc per class,
then mIoU, mAcc, aAcc; point clouds: accuracy per class or mIoU per category, then OA/mAcc or
instance/class mIoU; all in percent) and writes them to ``<work-dir>/test_metrics.json``.

``--show-dir DIR``  turn on the config's ``default_hooks.visualization`` hook for every test
                    sample and save the pictures under DIR (segmentation: prediction overlays).
``--out DIR``       write the metrics to ``DIR/metrics.json`` and every prediction into DIR:
                    segmentation, one label PNG per image (mmseg's ``IoUMetric`` output);
                    point clouds, one ``<index>.npz`` per sample (format in
                    ``projects/pointcloud/predictions.py``; ``tools/visualize_pointcloud.py``
                    renders them).
``--tta``           test-time augmentation through the config's ``tta_model`` and
                    ``tta_pipeline``: mmseg's multi-scale + flip averaging for segmentation,
                    votes over random views for point clouds (``--votes V`` views per cloud).
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
    parser.add_argument('--out', help='save metrics and predictions (segmentation: label PNGs; '
                        'point clouds: one <index>.npz per sample) in this folder')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation with the config\'s tta_model and tta_pipeline')
    parser.add_argument('--votes', type=int, metavar='V',
                        help='with --tta on point clouds: views per cloud (TestTimeVotes.num_votes)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config entries, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.votes is not None and not args.tta:
        parser.error('--votes needs --tta')
    if args.votes is not None and args.votes < 1:
        parser.error(f'--votes must be >= 1, got {args.votes}')
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


def _type(entry) -> str:
    return str(entry.get('type', '')).split('.')[-1] if isinstance(entry, (dict, ConfigDict)) else ''


def turn_on_tta(cfg: Config, votes: int | None = None) -> None:
    """mmseg's recipe: the test dataset runs ``tta_pipeline``, the model is ``tta_model`` around
    the config's model; ``votes`` sets ``num_votes`` of the point-cloud ``TestTimeVotes``."""
    missing = [k for k in ('tta_model', 'tta_pipeline') if cfg.get(k) is None]
    if missing:
        raise KeyError(f'--tta needs {" and ".join(missing)} in {cfg.filename} (see '
                       'configs/_base_/datasets/*.py or configs/pct/_base_/*.py for examples)')
    if votes is not None:
        voters = [t for t in cfg.tta_pipeline if _type(t) == 'TestTimeVotes']
        if not voters:
            raise KeyError(f'--votes: the tta_pipeline of {cfg.filename} has no TestTimeVotes step '
                           f'(its steps: {[_type(t) for t in cfg.tta_pipeline]}); --votes is for '
                           'point-cloud configs')
        for t in voters:
            t['num_votes'] = votes
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def set_output_dir(cfg: Config, out: str) -> None:
    """Make the test save its predictions in ``out`` (mmseg's ``IoUMetric.output_dir``; point
    clouds: :class:`~projects.pointcloud.predictions.PointPredictionWriter`, registered in main)."""
    evaluator = cfg.get('test_evaluator')
    iou = [ev for ev in (evaluator if isinstance(evaluator, (list, tuple)) else [evaluator])
           if _type(ev) == 'IoUMetric']
    for ev in iou:
        ev['output_dir'] = out
    if not iou and cfg.get('default_scope') != 'pointcloud':
        print(f'--out: {cfg.filename} has neither an IoUMetric nor point-cloud models; only the '
              f'metrics go to {out}')


def build_cfg(args) -> Config:
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint "{args.checkpoint}" does not exist')
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        turn_on_visualization(cfg, args.show_dir)
    if args.tta:
        turn_on_tta(cfg, args.votes)
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
    if args.out and cfg.get('default_scope') == 'pointcloud':
        from projects.pointcloud.predictions import PointPredictionWriter
        runner.register_hook(PointPredictionWriter(args.out))
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
        print(f'metrics written to {", ".join(paths)}' + (f'; predictions in {args.out}' if args.out else ''))
    return metrics


if __name__ == '__main__':
    main()
