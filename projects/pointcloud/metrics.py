"""Point-cloud metrics (METRICS, scope ``pointcloud``) and the one place of confusion / IoU maths.

Confusion matrices have ground truth on rows and predictions on columns:
:math:`\\mathrm{IoU}_c = M_{cc} / (\\sum_j M_{cj} + \\sum_i M_{ic} - M_{cc})`,
:math:`\\mathrm{Acc}_c = M_{cc} / \\sum_j M_{cj}`, :math:`\\mathrm{OA} = \\mathrm{tr} M / \\sum M`.

The helpers return fractions; the metrics report **percent** (0-100), as mmseg's ``IoUMetric`` and
mmpretrain's ``Accuracy`` do, so one plot or table holds both domains. Each metric prints its
per-class (per-category) table as mmseg prints its own: ``per class results:`` and a PrettyTable.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from prettytable import PrettyTable

from .registry import METRICS


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def confusion_matrix(pred, gt, num_classes: int, ignore_index: Optional[int] = None) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = ground truth, columns = prediction; ``ignore_index`` dropped."""
    pred, gt = _np(pred).reshape(-1).astype(np.int64), _np(gt).reshape(-1).astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f'confusion_matrix: {pred.shape[0]} predictions for {gt.shape[0]} labels')
    keep = gt != ignore_index if ignore_index is not None else np.ones_like(gt, dtype=bool)
    pred, gt = pred[keep], gt[keep]
    bad = (gt < 0) | (gt >= num_classes) | (pred < 0) | (pred >= num_classes)
    if bad.any():
        raise ValueError(f'confusion_matrix: labels must lie in [0, {num_classes}), got gt range '
                         f'[{gt.min()}, {gt.max()}] and prediction range [{pred.min()}, {pred.max()}]')
    return np.bincount(gt * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_from_confusion(cm: np.ndarray, absent: float = float('nan')) -> np.ndarray:
    """Per-class IoU; a class absent from both labels and predictions gets ``absent``."""
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, inter / np.maximum(union, 1), absent)


def accuracy_from_confusion(cm: np.ndarray):
    """``(OA, per-class accuracy)``; classes without labels get NaN accuracy."""
    total = cm.sum()
    oa = float(np.trace(cm) / total) if total else float('nan')
    rows = cm.sum(1)
    with np.errstate(invalid='ignore', divide='ignore'):
        acc = np.where(rows > 0, np.diag(cm) / np.maximum(rows, 1), np.nan)
    return oa, acc


def shape_part_iou(pred, gt, parts: Sequence[int]) -> float:
    """ShapeNetPart IoU of one shape: mean over the parts of its category; a part absent from
    both prediction and labels counts as IoU 1."""
    parts = list(parts)
    k = max(int(_np(gt).max(initial=0)), int(_np(pred).max(initial=0)), max(parts)) + 1
    cm = confusion_matrix(pred, gt, k)
    return float(iou_from_confusion(cm, absent=1.0)[parts].mean())


def print_table(title: str, columns: dict) -> None:
    """Log ``title`` and a PrettyTable of ``columns`` (name -> values; floats as ``%.2f``)."""
    table = PrettyTable()
    for name, values in columns.items():
        table.add_column(name, [f'{v:.2f}' if isinstance(v, (float, np.floating)) else v for v in values])
    logger = MMLogger.get_current_instance()
    print_log(title, logger=logger)
    print_log('\n' + table.get_string(), logger=logger)


def _names(given: Optional[Sequence[str]], meta: Optional[dict], key: str, count: int) -> list[str]:
    """Class names: the metric's own, else the dataset's ``metainfo[key]``, else the indices."""
    names = list(given) if given else list((meta or {}).get(key) or [])
    return names[:count] + [str(i) for i in range(len(names), count)]


@METRICS.register_module()
class ClassificationAccuracy(BaseMetric):
    """Overall accuracy (``OA``) and mean class accuracy (``mAcc``) over clouds, in percent;
    prints the per-class accuracy table.

    Consumes predict outputs with ``pred_label`` and ``gt_label``.
    """

    default_prefix = None

    def __init__(self, num_classes: Optional[int] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes = num_classes

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append((int(s['pred_label']), int(s['gt_label'])))

    def compute_metrics(self, results: list) -> dict:
        pred, gt = np.array([r[0] for r in results]), np.array([r[1] for r in results])
        k = self.num_classes or int(max(pred.max(), gt.max())) + 1
        cm = confusion_matrix(pred, gt, k)
        oa, acc = accuracy_from_confusion(cm)
        print_table('per class results:', {'Class': _names(None, self.dataset_meta, 'classes', k),
                                           'Acc': list(acc * 100), 'Clouds': list(cm.sum(1))})
        return dict(OA=100 * oa, mAcc=100 * float(np.nanmean(acc)))


@METRICS.register_module()
class PartSegMIoU(BaseMetric):
    """ShapeNetPart instance mIoU (``ins_mIoU``, mean over shapes) and class mIoU (``cls_mIoU``,
    mean over categories of their shapes' mean), in percent, per-shape IoU by
    :func:`shape_part_iou`; prints the per-category table.

    Args:
        category_parts: for each category id, its part ids (or a dataset name, ``'ShapeNetPart'``).
        category_names: names for the per-category table (default: the dataset's ``classes``).
    """

    default_prefix = None

    def __init__(self, category_parts: Sequence[Sequence[int]], category_names: Optional[Sequence[str]] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        from .datasets import resolve_category_parts
        self.category_parts = [list(p) for p in resolve_category_parts(category_parts)]
        self.category_names = list(category_names) if category_names else None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            cat = int(s['category'])
            self.results.append((cat, shape_part_iou(s['pred'], s['gt'], self.category_parts[cat])))

    def compute_metrics(self, results: list) -> dict:
        per_cat = {}
        for cat, iou in results:
            per_cat.setdefault(cat, []).append(iou)
        cat_miou = {c: float(np.mean(v)) for c, v in sorted(per_cat.items())}
        names = _names(self.category_names, self.dataset_meta, 'classes', len(self.category_parts))
        print_table('per category results:', {'Category': [names[c] for c in cat_miou],
                                              'mIoU': [100 * v for v in cat_miou.values()],
                                              'Shapes': [len(per_cat[c]) for c in cat_miou]})
        return dict(ins_mIoU=100 * float(np.mean([r[1] for r in results])),
                    cls_mIoU=100 * float(np.mean(list(cat_miou.values()))))


@METRICS.register_module()
class SemSegMetric(BaseMetric):
    """Semantic segmentation over all points: ``mIoU``, ``OA``, ``mAcc`` in percent; prints the
    per-class IoU / Acc table.

    Classes absent from both labels and predictions are left out of the means.
    """

    default_prefix = None

    def __init__(self, num_classes: int, class_names: Optional[Sequence[str]] = None,
                 ignore_index: Optional[int] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = list(class_names) if class_names else None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append(confusion_matrix(s['pred'], s['gt'], self.num_classes, self.ignore_index))

    def compute_metrics(self, results: list) -> dict:
        cm = np.sum(results, axis=0)
        iou = iou_from_confusion(cm)
        oa, acc = accuracy_from_confusion(cm)
        print_table('per class results:', {
            'Class': _names(self.class_names, self.dataset_meta, 'classes', self.num_classes),
            'IoU': list(iou * 100), 'Acc': list(acc * 100)})
        return dict(mIoU=100 * float(np.nanmean(iou)), OA=100 * oa, mAcc=100 * float(np.nanmean(acc)))
