"""Metrics against hand-computed examples."""
import numpy as np
import pytest
import torch

from projects.pointcloud.metrics import (ClassificationAccuracy, PartSegMIoU, SemSegMetric,
                                         confusion_matrix, iou_from_confusion, shape_part_iou)


def test_confusion_and_iou_by_hand():
    gt = [0, 0, 1, 1, 2, 255]
    pred = [0, 1, 1, 1, 0, 2]
    cm = confusion_matrix(pred, gt, 3, ignore_index=255)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    iou = iou_from_confusion(cm)
    # class 0: I=1, U=2+2-1=3; class 1: I=2, U=2+3-2=3; class 2: I=0, U=1
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 0.0])
    assert np.isnan(iou_from_confusion(np.zeros((2, 2), int))).all()
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 3\)'):
        confusion_matrix([0, 3], [0, 1], 3)


def logged(capsys, name: str):
    """Make a fresh current mmengine logger (its handler binds the test's captured stdout) and
    return a function giving what was logged so far."""
    from mmengine.logging import MMLogger
    MMLogger.get_instance(f'test-metrics-{name}')
    return lambda: capsys.readouterr().out


def _table_rows(text: str) -> dict:
    """``{first cell: other cells}`` of the PrettyTable printed in ``text``."""
    rows = [[c.strip() for c in line.strip().strip('|').split('|')]
            for line in text.splitlines() if line.strip().startswith('|')]
    return {r[0]: r[1:] for r in rows}


def test_classification_accuracy_in_percent_with_class_table(capsys):
    log = logged(capsys, 'cls')
    m = ClassificationAccuracy(num_classes=3)
    m.dataset_meta = dict(classes=('cone', 'cube', 'torus'))
    m.process(None, [dict(pred_label=torch.tensor(p), gt_label=torch.tensor(g))
                     for p, g in [(0, 0), (1, 0), (1, 1), (2, 2), (2, 2), (0, 2)]])
    res = m.compute_metrics(m.results)
    assert res['OA'] == pytest.approx(100 * 4 / 6)
    assert res['mAcc'] == pytest.approx(100 * (1 / 2 + 1 + 2 / 3) / 3)
    out = log()
    assert 'per class results:' in out
    rows = _table_rows(out)
    assert rows['Class'] == ['Acc', 'Clouds']
    assert rows['cone'] == ['50.00', '2'] and rows['cube'] == ['100.00', '1'] and rows['torus'] == ['66.67', '3']


def test_part_iou_absent_part_counts_as_one():
    # category with parts 4, 5, 6; part 6 absent in both labels and prediction -> IoU 1
    gt = torch.tensor([4, 4, 5, 5])
    pred = torch.tensor([4, 5, 5, 5])
    iou = shape_part_iou(pred, gt, [4, 5, 6])
    assert iou == pytest.approx((1 / 2 + 2 / 3 + 1.0) / 3)
    # a part predicted but absent in the labels gives IoU 0, not 1
    assert shape_part_iou(torch.tensor([4, 6]), torch.tensor([4, 4]), [4, 6]) == pytest.approx((0.5 + 0) / 2)


def test_part_seg_instance_and_class_miou_in_percent(capsys):
    log = logged(capsys, 'part')
    m = PartSegMIoU(category_parts=[[0, 1], [2, 3]], category_names=['mug', 'cap'])
    m.process(None, [
        dict(pred=torch.tensor([0, 0, 1]), gt=torch.tensor([0, 1, 1]), category=0),  # (1/2+1/2)/2=0.5
        dict(pred=torch.tensor([0, 1]), gt=torch.tensor([0, 1]), category=0),        # 1.0
        dict(pred=torch.tensor([2, 2]), gt=torch.tensor([2, 2]), category=1),        # (1 + 1)/2 = 1
    ])
    res = m.compute_metrics(m.results)
    assert res['ins_mIoU'] == pytest.approx(100 * (0.5 + 1 + 1) / 3)
    assert res['cls_mIoU'] == pytest.approx(100 * (0.75 + 1) / 2)
    rows = _table_rows(log())
    assert rows['Category'] == ['mIoU', 'Shapes']
    assert rows['mug'] == ['75.00', '2'] and rows['cap'] == ['100.00', '1']
    assert len(PartSegMIoU(category_parts='ShapeNetPart').category_parts) == 16


def test_semseg_metric_over_all_points_in_percent(capsys):
    log = logged(capsys, 'sem')
    m = SemSegMetric(num_classes=3)
    m.dataset_meta = dict(classes=['a', 'b', 'c'])  # names from the dataset when the metric has none
    m.process(None, [dict(pred=torch.tensor([0, 1, 1]), gt=torch.tensor([0, 0, 1])),
                     dict(pred=torch.tensor([1]), gt=torch.tensor([1]))])
    res = m.compute_metrics(m.results)
    # cm = [[1,1],[0,2]] on classes 0,1; class 2 absent -> left out
    assert res['OA'] == pytest.approx(100 * 3 / 4)
    assert res['mIoU'] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert res['mAcc'] == pytest.approx(100 * (1 / 2 + 1) / 2)
    rows = _table_rows(log())
    assert rows['Class'] == ['IoU', 'Acc']
    assert rows['a'] == ['50.00', '50.00'] and rows['b'] == ['66.67', '100.00'] and rows['c'] == ['nan', 'nan']
