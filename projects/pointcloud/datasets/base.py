"""What the point-cloud datasets share: the pipeline, ``metainfo``, ``skip_bad``, clear errors
for missing files and bad samples (:class:`~projects.bad_data.BadSampleError`: file, line or
key, what is wrong), and the checked readers of text clouds and point arrays."""
from __future__ import annotations

import os.path as osp
import warnings
from typing import Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from projects.bad_data import SkipBad, bad_sample
from ..transforms import build_pipeline


def require(path: str, what: str, dataset: str) -> str:
    """Return ``path`` if it exists, else raise ``FileNotFoundError`` naming it and the layout."""
    if not osp.exists(path):
        raise FileNotFoundError(f'{dataset}: missing {what}: {path} (see configs/pct/README.md for '
                                f'the expected folder layout; datasets are read from disk only)')
    return path


def check_points(points: np.ndarray, dataset: str, path: str, *, key: Optional[str] = None,
                 first_row: int = 0, line_numbers: bool = False) -> np.ndarray:
    """Raise ``BadSampleError`` for an empty cloud or non-finite coordinates (the first bad row,
    as a 1-based line when ``line_numbers``, else as a 0-based point index); return ``points``."""
    if points.shape[0] == 0:
        raise bad_sample(dataset, path, 'empty cloud (0 points)', key=key)
    finite = np.isfinite(points).all(1)
    if not finite.all():
        row = int(np.argmin(finite))
        n = int((~finite).sum())
        if line_numbers:
            raise bad_sample(dataset, path, f'{n} point(s) with NaN/Inf values, the first here: '
                             f'{points[row].tolist()}', line=first_row + row + 1, key=key)
        raise bad_sample(dataset, path, f'{n} point(s) with NaN/Inf values, the first is point '
                         f'{first_row + row}: {points[row].tolist()}', key=key)
    return points


def _first_bad_line(path: str, columns: int, delimiter: Optional[str]):
    """(line number, text, problem) of the first line that is not ``columns`` numbers."""
    with open(path, errors='replace') as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            parts = text.split(delimiter)
            if len(parts) != columns:
                return number, text, f'{len(parts)} values'
            for p in parts:
                try:
                    float(p)
                except ValueError:
                    return number, text, f'{p.strip()!r} is not a number'
    return None


def read_txt_cloud(path: str, columns: int, dataset: str, *, delimiter: Optional[str] = None,
                   fields: str = '') -> np.ndarray:
    """A text cloud, one point per line of ``columns`` numbers (``delimiter=None``: whitespace),
    as ``float32 (N, columns)``; ``BadSampleError`` naming the file and line for a malformed
    line, an empty file or NaN/Inf values."""
    sep = 'whitespace' if delimiter is None else repr(delimiter)
    what = f'{columns} {sep}-separated numbers' + (f' ({fields})' if fields else '')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # numpy's "input contained no data": reported below
            arr = np.loadtxt(path, delimiter=delimiter, dtype=np.float32, ndmin=2)
    except ValueError:
        arr = None
    if arr is None or (arr.size and arr.shape[1] != columns):
        bad = _first_bad_line(path, columns, delimiter)
        if bad is None:  # numpy disagreed with the line check: report the shape it read
            raise bad_sample(dataset, path, f'expected {what} per line, got shape '
                             f'{None if arr is None else arr.shape}') from None
        number, text, problem = bad
        raise bad_sample(dataset, path, f'expected {what}, got {text[:80]!r} ({problem})',
                         line=number) from None
    if arr.size == 0:
        raise bad_sample(dataset, path, 'empty cloud (no points in the file)')
    if not np.isfinite(arr).all():
        # the line of the first NaN/Inf row (numpy skips blank lines, so count them here)
        with open(path, errors='replace') as f:
            lines = [n for n, ln in enumerate(f, 1) if ln.strip()]
        row = int(np.argmin(np.isfinite(arr).all(1)))
        raise bad_sample(dataset, path, f'{int((~np.isfinite(arr).all(1)).sum())} point(s) with '
                         f'NaN/Inf values, the first: {arr[row].tolist()}', line=lines[row])
    return arr


def check_labels(labels: np.ndarray, num_classes: int, dataset: str, path: str, *,
                 key: Optional[str] = None, what: str = 'label') -> np.ndarray:
    """``BadSampleError`` unless every value is an integer in ``[0, num_classes)``."""
    values = np.asarray(labels)
    if values.size and (not np.isfinite(values).all() or (values != np.round(values)).any()):
        raise bad_sample(dataset, path, f'{what}s must be integers, got e.g. '
                         f'{values[~np.isfinite(values) | (values != np.round(values))][:3].tolist()}', key=key)
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise bad_sample(dataset, path, f'{bad.size} {what}(s) outside 0..{num_classes - 1}: '
                         f'{sorted(set(bad.astype(np.int64).tolist()))[:8]}', key=key)
    return labels


class PointCloudDataset(Dataset):
    """Base: subclasses fill ``self.samples`` and implement :meth:`get_sample` (a dict of arrays);
    the pipeline (transform configs or callables, ending with ``PackPointCloud``) turns it into a
    ``Data``. ``METAINFO`` holds class names; ``metainfo`` is what mmengine's evaluator receives.

    ``skip_bad=True``: a sample raising ``BadSampleError`` is logged (file and reason, with the
    count so far) and replaced by the next good one; by default the error propagates.
    """

    METAINFO: dict = {}

    def __init__(self, data_root: str = '', pipeline: Optional[Sequence] = None,
                 test_mode: bool = False, skip_bad: bool = False):
        self.data_root = data_root
        self.test_mode = test_mode
        self.pipeline = build_pipeline(pipeline)
        self.skip_bad = SkipBad(type(self).__name__, skip_bad)

    @property
    def metainfo(self) -> dict:
        return dict(self.METAINFO)

    def __len__(self) -> int:
        return len(self.samples)

    def get_sample(self, idx: int) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, idx: int):
        results = self.get_sample(idx)
        for t in self.pipeline:
            results = t(results)
        return results

    def __getitem__(self, idx: int):
        return self.skip_bad.load(idx, len(self), self._load)
