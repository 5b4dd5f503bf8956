"""Bad data is named, never crashed on deep inside a library nor skipped silently.

Datasets of both domains raise :class:`BadSampleError` when a sample (or the container file that
holds it) is unreadable or wrong: the message names the dataset, the file with its line or key,
and what is wrong. With ``skip_bad=True`` a dataset logs each bad file with the running count
and serves the next good sample instead (:class:`SkipBad`; no randomness, so an exact resume
stays exact).
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

from mmengine.logging import print_log


class BadSampleError(ValueError):
    """A sample or data file is unreadable or wrong; the message says which and why."""


def bad_sample(dataset: str, path: str, problem: str, *, line: Optional[int] = None,
               key: Optional[str] = None) -> BadSampleError:
    """``BadSampleError('<dataset>: <path>[:line][ key]: <problem>')``."""
    where = str(path) + (f':{line}' if line is not None else '') + (f' [{key}]' if key is not None else '')
    return BadSampleError(f'{dataset}: {where}: {problem}')


class SkipBad:
    """A dataset's ``skip_bad`` policy.

    :meth:`load` returns sample ``idx``; when it is bad and skipping is on, the next good one
    (``idx + 1``, ``idx + 2``, ... wrapping around), logging each bad sample once with the count
    so far. Known-bad indices are not read again. Off: the :class:`BadSampleError` propagates.
    """

    def __init__(self, dataset: str, enabled: bool = False):
        self.dataset, self.enabled = dataset, bool(enabled)
        self.bad: dict = {}

    def skip(self, err: BadSampleError, key=None) -> None:
        """Record and log one bad item (re-raises when skipping is off)."""
        if not self.enabled:
            raise err
        self.bad[key if key is not None else len(self.bad)] = str(err)
        print_log(f'skip_bad: skipping {err} ({len(self.bad)} bad so far)', logger='current',
                  level=logging.WARNING)

    def load(self, idx: int, length: int, load: Callable[[int], object]):
        for step in range(length):
            j = (idx + step) % length
            if j in self.bad:
                continue
            try:
                return load(j)
            except BadSampleError as err:
                self.skip(err, key=j)
        raise BadSampleError(f'{self.dataset}: every one of its {length} samples is bad '
                             f'(skip_bad=True skipped them all)')
