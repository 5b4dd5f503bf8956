"""tools/analyze_logs.py labels every percent metric of both domains with its unit."""
import importlib.util
import os.path as osp
import sys

import torch

from projects.pointcloud.metrics import ClassificationAccuracy, PartSegMIoU, SemSegMetric

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location('analyze_logs', osp.join(ROOT, 'tools', 'analyze_logs.py'))
    mod = importlib.util.module_from_spec(spec)
    sys.modules['analyze_logs'] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_logged_metric_is_labelled_percent():
    tool = _tool()
    cls = ClassificationAccuracy(num_classes=2)
    cls.process(None, [dict(pred_label=torch.tensor(0), gt_label=torch.tensor(0))])
    part = PartSegMIoU(category_parts=[[0, 1]])
    part.process(None, [dict(pred=torch.tensor([0, 1]), gt=torch.tensor([0, 1]), category=0)])
    sem = SemSegMetric(num_classes=2)
    sem.process(None, [dict(pred=torch.tensor([0, 1]), gt=torch.tensor([0, 0]))])
    keys = [k for m in (cls, part, sem) for k in m.compute_metrics(m.results)]
    keys += ['aAcc', 'mIoU', 'mAcc', 'mDice']  # mmseg's IoUMetric
    for key in keys:
        assert tool.axis_label(key) == f'{key} (%)', key
    assert tool.axis_label('val/OA') == 'val/OA (%)'
    assert tool.axis_label('loss') == 'loss' and tool.axis_label('lr') == 'learning rate'
