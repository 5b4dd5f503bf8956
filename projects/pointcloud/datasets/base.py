"""What the point-cloud datasets share: the pipeline, ``metainfo``, clear missing-file errors."""
from __future__ import annotations

import os.path as osp
from typing import Optional, Sequence

from torch.utils.data import Dataset

from ..transforms import build_pipeline


def require(path: str, what: str, dataset: str) -> str:
    """Return ``path`` if it exists, else raise ``FileNotFoundError`` naming it and the layout."""
    if not osp.exists(path):
        raise FileNotFoundError(f'{dataset}: missing {what}: {path} (see configs/pct/README.md for '
                                f'the expected folder layout; datasets are read from disk only)')
    return path


class PointCloudDataset(Dataset):
    """Base: subclasses fill ``self.samples`` and implement :meth:`get_sample` (a dict of arrays);
    the pipeline (transform configs or callables, ending with ``PackPointCloud``) turns it into a
    ``Data``. ``METAINFO`` holds class names; ``metainfo`` is what mmengine's evaluator receives.
    """

    METAINFO: dict = {}

    def __init__(self, data_root: str = '', pipeline: Optional[Sequence] = None,
                 test_mode: bool = False):
        self.data_root = data_root
        self.test_mode = test_mode
        self.pipeline = build_pipeline(pipeline)

    @property
    def metainfo(self) -> dict:
        return dict(self.METAINFO)

    def __len__(self) -> int:
        return len(self.samples)

    def get_sample(self, idx: int) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, idx: int):
        results = self.get_sample(idx)
        for t in self.pipeline:
            results = t(results)
        return results
