"""Learning on small data: a short run of each demo config, through the same runner as
tools/train.py, beats chance on held-out synthetic data by a stated margin.

Segmentation: mIoU over the 4 classes (IoU summed over the validation set) against the
all-background prediction, the best constant guess (about 20 here). Point clouds: overall
accuracy on 6 balanced primitive classes against 1/6.
"""
import numpy as np
import pytest
import torch

from projects.runtime import build_runner, load_config
from projects.segmentation.demo_shapes import CLASSES, generate

from .common import PC_CONFIG, PC_TINY_OPTIONS, SEG_CONFIG

# measured with one thread: mIoU 54.4 against 20.4 for all-background; OA 0.70 against 0.167
SEG_ITERS, SEG_LR, SEG_MARGIN = 300, 0.02, 15.0    # mIoU points above the all-background guess
PC_EPOCHS, PC_MARGIN = 10, 0.30                    # OA above 1/6


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as measured (the trajectory depends on how sums split over threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(config, options, work_dir):
    cfg = load_config(config, options, work_dir=str(work_dir))
    runner = build_runner(cfg)
    return runner, runner.train().eval()


def _iou_sums(pred: np.ndarray, gt: np.ndarray, k: int):
    inter = np.array([((pred == c) & (gt == c)).sum() for c in range(k)])
    union = np.array([((pred == c) | (gt == c)).sum() for c in range(k)])
    return inter, union


@pytest.mark.e2e
@pytest.mark.slow
def test_segmentation_demo_learns_beyond_chance(tmp_path):
    root = generate(str(tmp_path / 'shapes'), num_train=64, num_val=16, size=32, seed=7)
    options = {f'{k}.dataset.data_root': root for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
    options.update({'model.data_preprocessor.size': (32, 32), 'train_cfg.max_iters': SEG_ITERS,
                    'train_cfg.val_interval': 10 * SEG_ITERS, 'param_scheduler.0.end': SEG_ITERS,
                    'optim_wrapper.optimizer.lr': SEG_LR, 'default_hooks.checkpoint.interval': 10 * SEG_ITERS,
                    'default_hooks.checkpoint.save_last': False, 'default_hooks.logger.interval': 50})
    runner, model = _train(SEG_CONFIG, options, tmp_path / 'work')
    k = len(CLASSES)
    inter, union, base_inter, base_union = (np.zeros(k) for _ in range(4))
    with torch.no_grad():
        for batch in runner.val_dataloader:
            for out in model.test_step(batch):
                pred, gt = out.pred_sem_seg.data[0].numpy(), out.gt_sem_seg.data[0].numpy()
                i, u = _iou_sums(pred, gt, k)
                bi, bu = _iou_sums(np.zeros_like(gt), gt, k)
                inter, union, base_inter, base_union = inter + i, union + u, base_inter + bi, base_union + bu
    miou = 100 * np.mean(inter / np.maximum(union, 1))
    chance = 100 * np.mean(base_inter / np.maximum(base_union, 1))
    assert miou >= chance + SEG_MARGIN, f'mIoU {miou:.1f} after {SEG_ITERS} iterations; all-background {chance:.1f}'


@pytest.mark.e2e
def test_pointcloud_demo_learns_beyond_chance(tmp_path):
    options = dict(PC_TINY_OPTIONS)
    options.update({'train_dataloader.dataset.num_samples': 96, 'val_dataloader.dataset.num_samples': 60,
                    'train_cfg.max_epochs': PC_EPOCHS, 'train_cfg.val_interval': 10 * PC_EPOCHS,
                    'param_scheduler.0.T_max': PC_EPOCHS, 'default_hooks.checkpoint.interval': 10 * PC_EPOCHS,
                    'default_hooks.checkpoint.save_best': None, 'default_hooks.checkpoint.save_last': False})
    runner, model = _train(PC_CONFIG, options, tmp_path / 'work')
    right = total = 0
    with torch.no_grad():
        for batch in runner.val_dataloader:
            for out in model.test_step(batch):
                right += int(out['pred_label'] == out['gt_label'])
                total += 1
    assert total == 60
    assert right / total >= 1 / 6 + PC_MARGIN, f'OA {right / total:.3f} after {PC_EPOCHS} epochs; chance 1/6'
