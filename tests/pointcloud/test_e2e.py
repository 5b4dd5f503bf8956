"""2-iteration train + test of the point-cloud demo through tools/train.py and tools/test.py."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = 'configs/pct/pct-tiny_1xb16-8e_synthetic-primitives-256.py'
TINY = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=2',
        'train_dataloader.dataset.num_samples=4', 'val_dataloader.dataset.num_samples=6',
        'train_dataloader.dataset.num_points=64', 'val_dataloader.dataset.num_points=64',
        'model.neighbor_stages=[[16,4,64],[8,4,64]]']


def _run(args, cwd):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.e2e
def test_train_then_test_demo(tmp_path):
    work = tmp_path / 'work'
    log = _run([str(ROOT / 'tools' / 'train.py'), CONFIG, '--work-dir', str(work),
                '--cfg-options', *TINY], ROOT)
    assert 'Epoch(train) [1][2/2]' in log
    ckpt = work / 'epoch_1.pth'
    assert ckpt.exists()
    _run([str(ROOT / 'tools' / 'test.py'), CONFIG, str(ckpt), '--work-dir', str(work),
          '--cfg-options', *TINY[3:]], ROOT)
    metrics = json.loads((work / 'test_metrics.json').read_text())
    assert set(metrics) >= {'OA', 'mAcc'} and 0.0 <= metrics['OA'] <= 100.0
