"""Progress bars for the tools that loop over files or samples outside mmengine's runner.

One choice for the whole repository: ``tqdm``, drawn on stderr, and only when the user watches a
terminal. It stays silent under ``--quiet`` and whenever stdout or stderr is not a TTY (a piped or
redirected log, CI), so logs keep one line per event instead of carriage-return noise.

    from projects.progress import add_quiet_argument, track, write

    parser = argparse.ArgumentParser()
    add_quiet_argument(parser)
    args = parser.parse_args()
    for path in track(paths, desc='converting', quiet=args.quiet):
        ...
        write(f'skipped {path}')   # a line of output while a bar may be drawn
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterable, Iterator, Optional, TypeVar

from tqdm import tqdm

T = TypeVar('T')


def interactive() -> bool:
    """True when both stdout and stderr are terminals (a bar would be seen, and not logged)."""
    return all(getattr(s, 'isatty', lambda: False)() for s in (sys.stdout, sys.stderr))


def track(iterable: Iterable[T], total: Optional[int] = None, desc: Optional[str] = None,
          quiet: bool = False) -> Iterator[T]:
    """Yield from ``iterable`` with a progress bar (``total`` defaults to ``len(iterable)``).

    The bar is drawn only when not ``quiet`` and the process writes to a terminal; otherwise the
    items pass through untouched (no output at all).
    """
    if quiet or not interactive():
        yield from iterable
        return
    if total is None and hasattr(iterable, '__len__'):
        total = len(iterable)  # type: ignore[arg-type]
    with tqdm(iterable, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True,
              leave=True) as bar:
        yield from bar


def write(message: str) -> None:
    """Print a line to stdout without breaking a bar that is being drawn."""
    tqdm.write(message, file=sys.stdout)


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """Add the tools' common ``--quiet`` flag (no progress bars)."""
    parser.add_argument('--quiet', action='store_true',
                        help='no progress bars (they are also off when output is not a terminal)')
