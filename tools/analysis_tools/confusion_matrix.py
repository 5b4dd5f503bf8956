"""Confusion matrix of saved test predictions, with the dataset's class names, as a PNG.

    python tools/test.py CONFIG CHECKPOINT --out PRED_DIR
    python tools/analysis_tools/confusion_matrix.py CONFIG PRED_DIR [--out confusion.png]
                                                    [--no-normalize] [--cfg-options ...]

* Segmentation: ``PRED_DIR`` holds mmseg's label PNGs (``IoUMetric.output_dir``: one
  ``<image name>.png`` per test image); the ground truth is read from the config's test dataset
  with mmseg's ``LoadAnnotations`` (``reduce_zero_label`` and ``label_map`` applied, the
  dataset's ``ignore_index`` left out).
* Point clouds: ``PRED_DIR`` holds ``<index>.npz`` files (``projects/pointcloud/predictions.py``)
  carrying both prediction and ground truth; the config gives the class names (part names for
  part segmentation).

Rows are ground truth, columns predictions; by default each row is normalised to percent of
its ground truth (the diagonal is the per-class recall), with the raw counts in ``<out>.csv``.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from projects.pointcloud.metrics import confusion_matrix  # noqa: E402
from projects.progress import add_quiet_argument, track  # noqa: E402


def segmentation_counts(cfg, pred_dir: str, quiet: bool = False) -> tuple[np.ndarray, list[str]]:
    """``(K, K)`` counts over the test images of ``cfg`` and the class names."""
    from PIL import Image
    from mmseg.registry import TRANSFORMS

    from projects.runtime import build_dataset
    dataset = build_dataset(cfg, 'test')
    names = list(dataset.metainfo['classes'])
    load = TRANSFORMS.build(dict(type='LoadAnnotations'))
    cm = np.zeros((len(names), len(names)), np.int64)
    for i in track(range(len(dataset)), desc='confusion matrix', quiet=quiet):
        info = dataset.get_data_info(i)
        stem = osp.splitext(osp.basename(info['img_path']))[0]
        path = osp.join(pred_dir, f'{stem}.png')
        if not osp.isfile(path):
            raise FileNotFoundError(f'no prediction {path} for test image {info["img_path"]} '
                                    f'(write them with tools/test.py CONFIG CKPT --out {pred_dir})')
        gt = load(dict(info, seg_fields=[]))['gt_seg_map'].astype(np.int64)
        pred = np.asarray(Image.open(path), np.int64)
        if info.get('reduce_zero_label', False):
            pred = pred - 1  # IoUMetric saved the prediction + 1 for these datasets
        if pred.shape != gt.shape:
            raise ValueError(f'{path}: prediction {pred.shape} but ground truth {gt.shape} '
                             f'({info["seg_map_path"]})')
        keep = gt != dataset.ignore_index
        cm += confusion_matrix(pred[keep], gt[keep], len(names))
    return cm, names


def pointcloud_counts(cfg, pred_dir: str, quiet: bool = False) -> tuple[np.ndarray, list[str]]:
    """``(K, K)`` counts over the ``<index>.npz`` files and the class (or part) names."""
    from projects.pointcloud.predictions import load_prediction, prediction_files
    from projects.pointcloud.visualization import label_names
    preds, gts = [], []
    for path in track(prediction_files(pred_dir), desc='confusion matrix', quiet=quiet):
        p = load_prediction(path)
        if 'labels' not in p:
            raise KeyError(f'{path} has no ground truth ("labels"): a confusion matrix needs it')
        preds.append(p['pred'])
        gts.append(p['labels'])
    per_point = any(g.size > 1 for g in gts)
    names = label_names(dataset_metainfo(cfg), per_point) or []
    k = max(len(names), int(max(max(a.max() for a in preds), max(a.max() for a in gts))) + 1)
    names = names + [str(i) for i in range(len(names), k)]
    return confusion_matrix(np.concatenate(preds), np.concatenate(gts), k), names


def dataset_metainfo(cfg) -> dict:
    """The test dataset's metainfo (its class attribute ``METAINFO`` when the data is absent)."""
    from mmengine.registry import DATASETS

    from projects.runtime import build_dataset, dataset_cfg
    try:
        return dict(build_dataset(cfg, 'test').metainfo)
    except (FileNotFoundError, OSError):
        return dict(getattr(DATASETS.get(dataset_cfg(cfg, 'test')['type']), 'METAINFO', {}) or {})


def plot(cm: np.ndarray, names: list[str], out_file: str, normalize: bool = True,
         title: str | None = None) -> str:
    """Draw the matrix (rows ground truth, columns prediction) with names and cell values."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    k = len(names)
    rows = cm.sum(1, keepdims=True)
    values = np.where(rows > 0, 100.0 * cm / np.maximum(rows, 1), np.nan) if normalize else cm.astype(float)
    side = min(max(4.0, 0.45 * k + 2.5), 30.0)
    fig = Figure(figsize=(side + 1.2, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap='Blues', vmin=0, vmax=100 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label='% of the ground-truth class' if normalize else 'count')
    ax.set_xticks(range(k), names, rotation=45, ha='right', fontsize=8 if k < 30 else 5)
    ax.set_yticks(range(k), names, fontsize=8 if k < 30 else 5)
    ax.set_xlabel('prediction')
    ax.set_ylabel('ground truth')
    ax.set_title(title or ('normalised confusion matrix (%)' if normalize else 'confusion matrix'))
    if k <= 30:
        top = np.nanmax(values) if np.isfinite(values).any() else 0
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                if np.isfinite(v) and (v > 0 or i == j):
                    ax.text(j, i, f'{v:.1f}' if normalize else f'{int(v)}', ha='center', va='center',
                            fontsize=7, color='white' if v > 0.6 * top else 'black')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file)
    return out_file


def write_csv(cm: np.ndarray, names: list[str], path: str) -> str:
    with open(path, 'w') as f:
        f.write('ground truth \\ prediction,' + ','.join(names) + '\n')
        for name, row in zip(names, cm):
            f.write(name + ',' + ','.join(str(int(v)) for v in row) + '\n')
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Confusion matrix of saved test predictions')
    p.add_argument('config', help='config file (test dataset, class names)')
    p.add_argument('predictions', help='folder written by tools/test.py --out')
    p.add_argument('--out', default='confusion_matrix.png', help='output PNG (counts in <out>.csv)')
    p.add_argument('--no-normalize', action='store_true', help='raw counts instead of row percent')
    p.add_argument('--title', help='figure title')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='override config entries, e.g. test_dataloader.dataset.data_root=DIR')
    add_quiet_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from projects.runtime import load_config
    cfg = load_config(args.config, args.cfg_options)
    counts = pointcloud_counts if cfg.get('default_scope') == 'pointcloud' else segmentation_counts
    cm, names = counts(cfg, args.predictions, args.quiet)
    png = plot(cm, names, args.out, normalize=not args.no_normalize, title=args.title)
    csv = write_csv(cm, names, osp.splitext(args.out)[0] + '.csv')
    total = cm.sum()
    print(f'{total:,} labels, {len(names)} classes, accuracy {100 * np.trace(cm) / max(total, 1):.2f}%')
    print(f'confusion matrix written to {png} (counts: {csv})')
    return dict(matrix=cm, names=names, image=png, csv=csv)


if __name__ == '__main__':
    main()
