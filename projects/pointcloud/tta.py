"""Test-time augmentation for point clouds: voting over random views, as the PointNet++ / RS-CNN /
DGCNN-family evaluation scripts do (``NUM_VOTE`` views of each test cloud, class probabilities
averaged, then the argmax).

``tools/test.py --tta`` puts the config's ``tta_pipeline`` in the test dataloader and wraps the
model in the config's ``tta_model``::

    tta_model = dict(type='PointCloudTTAModel')
    tta_pipeline = test_pipeline[:-1] + [
        dict(type='TestTimeVotes', num_votes=10,
             augment=[dict(type='RandomScaleShift', scale=(0.8, 1.25), shift=0.0)],
             pack=test_pipeline[-1])]

View 0 is the sample as the test pipeline gives it, views 1..V-1 go through ``augment`` (random
transforms draw anew for each view), so ``num_votes=1`` is the plain test. ``--votes V`` on the
command line sets ``num_votes``. For per-point tasks the augmentations must keep the points and
their order (scale, rotate, jitter; not sampling or shuffling): votes are summed point by point.
"""
from __future__ import annotations

import copy
import logging
from typing import Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel
from torch import Tensor

from .registry import MODELS, TRANSFORMS
from .transforms import build_pipeline


@TRANSFORMS.register_module()
class TestTimeVotes:
    """Turn one sample into ``num_votes`` packed views (a list of ``Data``).

    Args:
        num_votes: views per sample (>= 1); the first is not augmented.
        augment: transform configs applied to views 1..V-1.
        pack: the pipeline's packing transform (``PackPointCloud``), applied to every view.
    """

    def __init__(self, num_votes: int = 10, augment: Sequence = (),
                 pack: Optional[dict] = None):
        if int(num_votes) < 1:
            raise ValueError(f'TestTimeVotes: num_votes must be >= 1, got {num_votes}')
        self.num_votes = int(num_votes)
        self.augment = build_pipeline(augment)
        self.pack = build_pipeline([pack or dict(type='PackPointCloud')])[0]

    def __call__(self, results: dict) -> list:
        views = [self.pack(copy.deepcopy(results))]
        for _ in range(self.num_votes - 1):
            view = copy.deepcopy(results)
            for t in self.augment:
                view = t(view)
            views.append(self.pack(view))
        return views


@MODELS.register_module()
class PointCloudTTAModel(BaseTTAModel):
    """Wraps a point-cloud network (``module``) for voting: each view's class probabilities
    (softmax of the network's scores) are averaged, and the network's own ``predict`` turns the
    mean (as log-probabilities) into its usual outputs (category restriction included).

    Batches come from :func:`~projects.pointcloud.transforms.pointcloud_collate` over
    :class:`TestTimeVotes` samples: ``inputs`` is a list of V batches, view by view.
    A batch that is not a list (a dataset that skips the pipeline, such as whole S3DIS rooms,
    which vote over overlapping blocks already) is predicted as it is.
    """

    def merge_preds(self, data_samples_list: list) -> Tensor:
        """Mean of the views' class probabilities: a list of V ``(M, K)`` tensors -> ``(M, K)``."""
        shapes = {tuple(p.shape) for p in data_samples_list}
        if len(shapes) != 1:
            raise ValueError(f'PointCloudTTAModel: the views have different score shapes {sorted(shapes)}; '
                             'TestTimeVotes augmentations must keep every point (no sampling or dropout)')
        return torch.stack(list(data_samples_list)).mean(0)

    @torch.no_grad()
    def test_step(self, data: dict) -> list:
        views = data['inputs']
        if not isinstance(views, (list, tuple)):
            print_log('PointCloudTTAModel: the batch holds one view (the dataset does not run '
                      'tta_pipeline); predicting without votes', logger='current', level=logging.WARNING)
            return self.module.test_step(data)
        batches = [self.module.data_preprocessor(dict(inputs=v), False)['inputs'] for v in views]
        probs = self.merge_preds([self.module.logits(b).softmax(-1) for b in batches])
        return self.module.predict(batches[0], logits=probs.clamp_min(1e-12).log())
