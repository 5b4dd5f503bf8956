"""Point-cloud metrics (METRICS, scope ``pointcloud``) and the one place of confusion / IoU maths.

Confusion matrices have ground truth on rows and predictions on columns:
:math:`\\mathrm{IoU}_c = M_{cc} / (\\sum_j M_{cj} + \\sum_i M_{ic} - M_{cc})`,
:math:`\\mathrm{Acc}_c = M_{cc} / \\sum_j M_{cj}`, :math:`\\mathrm{OA} = \\mathrm{tr} M / \\sum M`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log

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


@METRICS.register_module()
class ClassificationAccuracy(BaseMetric):
    """Overall accuracy (``OA``) and mean class accuracy (``mAcc``) over clouds.

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
        oa, acc = accuracy_from_confusion(confusion_matrix(pred, gt, k))
        return dict(OA=oa, mAcc=float(np.nanmean(acc)))


@METRICS.register_module()
class PartSegMIoU(BaseMetric):
    """ShapeNetPart instance mIoU (``ins_mIoU``, mean over shapes) and class mIoU (``cls_mIoU``,
    mean over categories of their shapes' mean), per-shape IoU by :func:`shape_part_iou`.

    Args:
        category_parts: for each category id, its part ids (or a dataset name, ``'ShapeNetPart'``).
        category_names: names for the per-category table.
    """

    default_prefix = None

    def __init__(self, category_parts: Sequence[Sequence[int]], category_names: Optional[Sequence[str]] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        from .datasets import resolve_category_parts
        self.category_parts = [list(p) for p in resolve_category_parts(category_parts)]
        self.category_names = list(category_names) if category_names else [
            str(i) for i in range(len(self.category_parts))]

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            cat = int(s['category'])
            self.results.append((cat, shape_part_iou(s['pred'], s['gt'], self.category_parts[cat])))

    def compute_metrics(self, results: list) -> dict:
        per_cat = {}
        for cat, iou in results:
            per_cat.setdefault(cat, []).append(iou)
        cat_miou = {c: float(np.mean(v)) for c, v in sorted(per_cat.items())}
        table = '\n'.join(f'{self.category_names[c]:>12s}  {v * 100:6.2f}  ({len(per_cat[c])} shapes)'
                          for c, v in cat_miou.items())
        print_log('per-category part mIoU:\n' + table, logger=MMLogger.get_current_instance())
        return dict(ins_mIoU=float(np.mean([r[1] for r in results])),
                    cls_mIoU=float(np.mean(list(cat_miou.values()))))


@METRICS.register_module()
class SemSegMetric(BaseMetric):
    """Semantic segmentation over all points: ``mIoU``, ``OA``, ``mAcc``; prints a per-class table.

    Classes absent from both labels and predictions are left out of the means.
    """

    default_prefix = None

    def __init__(self, num_classes: int, class_names: Optional[Sequence[str]] = None,
                 ignore_index: Optional[int] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append(confusion_matrix(s['pred'], s['gt'], self.num_classes, self.ignore_index))

    def compute_metrics(self, results: list) -> dict:
        cm = np.sum(results, axis=0)
        iou = iou_from_confusion(cm)
        oa, acc = accuracy_from_confusion(cm)
        lines = [f'{"class":>12s}  {"IoU":>6s}  {"Acc":>6s}']
        for name, i, a in zip(self.class_names, iou, acc):
            lines.append(f'{name:>12s}  {i * 100:6.2f}  {a * 100:6.2f}')
        print_log('per-class results:\n' + '\n'.join(lines), logger=MMLogger.get_current_instance())
        return dict(mIoU=float(np.nanmean(iou)), OA=oa, mAcc=float(np.nanmean(acc)))
