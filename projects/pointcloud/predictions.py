"""Point-cloud predictions on disk: what ``tools/test.py --out DIR`` writes for a point-cloud config.

One file per test sample, ``DIR/<index>.npz`` (``index`` = the sample's index in the test
dataset, five digits), ``numpy.savez`` arrays:

==============  ===============  ===========================================================
``pred``        int64 ``(N,)``   predicted label of each point, or ``(1,)``: the cloud's class
``labels``      int64            ground truth, same shape (absent when the dataset has none)
``points``      float32 ``(N,3)`` coordinates the network saw (after the test pipeline); absent
                                 for whole-room predictions (S3DIS: votes over blocks), which
                                 pair with the converted room ``data/s3dis/Area_5_<room>.npy``
``category``    int64 ``(1,)``   the shape's category (part segmentation)
``probs``       float32 ``(K,)`` class probabilities of a cloud (classification)
==============  ===============  ===========================================================

``python tools/visualize_pointcloud.py DIR/00003.npz`` renders ground truth | prediction | errors;
``tools/analysis_tools/confusion_matrix.py CONFIG DIR`` counts them.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.hooks import Hook

KEYS = ('pred', 'labels', 'points', 'category', 'probs')


def _np(x, dtype) -> Optional[np.ndarray]:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(dtype).reshape(-1) if dtype is np.int64 else np.asarray(x, dtype)


def save_prediction(path: str, pred, labels=None, points=None, category=None, probs=None) -> str:
    """Write one sample's prediction (see the module docstring); returns ``path``."""
    arrays = dict(pred=_np(pred, np.int64), labels=_np(labels, np.int64),
                  points=_np(points, np.float32), category=_np(category, np.int64),
                  probs=_np(probs, np.float32))
    arrays = {k: v for k, v in arrays.items() if v is not None}
    if arrays['pred'].size > 1 and 'points' in arrays and len(arrays['points']) != arrays['pred'].size:
        raise ValueError(f'save_prediction: {arrays["pred"].size} point labels for '
                         f'{len(arrays["points"])} points ({path})')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.tmp'  # atomic: ranks of a padded distributed test may share a sample
    with open(tmp, 'wb') as f:  # np.savez would append ".npz" to a path without it
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def load_prediction(path: str) -> dict:
    """The arrays of one prediction file (``pred`` always; the others when present)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'prediction file not found: {path}')
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files if k in KEYS}
    if 'pred' not in out:
        raise KeyError(f'{path} is not a point-cloud prediction file: no "pred" array '
                       f'(arrays: {sorted(out)}; written by tools/test.py --out)')
    return out


def prediction_files(folder: str) -> list[str]:
    """The ``<index>.npz`` files of a ``--out`` folder, in index order."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'predictions folder not found: {folder}')
    files = sorted(glob.glob(osp.join(folder, '[0-9]*.npz')))
    if not files:
        raise FileNotFoundError(f'{folder} holds no <index>.npz prediction files '
                                '(write them with tools/test.py CONFIG CKPT --out DIR)')
    return files


def _views_first(inputs):
    """The batch of the first test-time view (votes), or the batch itself."""
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


class PointPredictionWriter(Hook):
    """Test hook: writes every test sample's prediction to ``out_dir/<index>.npz``.

    The dataset index of each output comes from the test dataloader's batch sampler (the same
    deterministic order the loop reads), so every rank of a distributed test writes its own
    samples and no predictions are gathered in memory.
    """

    priority = 'LOW'

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self._batches: Sequence[Sequence[int]] = ()

    def before_test_epoch(self, runner) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        self._batches = [list(b) for b in runner.test_loop.dataloader.batch_sampler]

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        indices = self._batches[batch_idx]
        batch = _views_first(data_batch['inputs'])
        rooms = getattr(batch, 'point_idx', None) is not None
        if len(outputs) != len(indices):
            raise RuntimeError(f'PointPredictionWriter: {len(outputs)} outputs for batch {batch_idx} '
                               f'of {len(indices)} samples')
        for j, (index, out) in enumerate(zip(indices, outputs)):
            per_cloud = 'pred_label' in out
            points = None if rooms else batch.get_example(j).pos
            logits = out.get('logits')
            save_prediction(
                osp.join(self.out_dir, f'{index:05d}.npz'),
                pred=out['pred_label'] if per_cloud else out['pred'],
                labels=out.get('gt_label') if per_cloud else out.get('gt'),
                points=points, category=out.get('category'),
                probs=None if logits is None else logits.float().softmax(-1))
