"""Plot loss, learning rate and validation metrics from mmengine's JSON logs.

mmengine writes one JSON object per line to ``<work_dir>/<timestamp>/vis_data/scalars.json``
(and the same lines to ``<timestamp>.json`` next to it). Training lines carry ``lr``, ``loss``
(and ``loss_*`` terms), ``iter`` (and ``epoch`` when training by epoch) and ``step``, the global
iteration; validation lines carry the metrics (``mIoU``, ``aAcc``, ``acc/overall``, ...) and
``step``, which is the epoch for epoch-based runs and the iteration otherwise.

Examples::

    python tools/analyze_logs.py work_dirs/eanet_demo --out loss.png
    python tools/analyze_logs.py a/vis_data/scalars.json b/vis_data/scalars.json \\
        --keys loss mIoU --legend EANet OCR --out compare.png

A run may be given as a JSON file or as a work dir (its newest ``*/vis_data/scalars.json``).
Validation metrics of both domains are logged in percent (mmseg's ``mIoU``/``mAcc``/``aAcc``, the
point-cloud ``OA``/``mAcc``/``ins_mIoU``/``cls_mIoU``/``mIoU``); their axes say so.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import os.path as osp
import sys
from dataclasses import dataclass, field

# bookkeeping scalars that are not worth a plot by default
NON_METRIC = {'step', 'iter', 'epoch', 'time', 'data_time', 'memory', 'eta', 'mode', 'lr'}
# validation metrics logged in percent by mmseg and by projects.pointcloud.metrics
PERCENT_METRICS = {'aAcc', 'mIoU', 'mAcc', 'mDice', 'mFscore', 'mPrecision', 'mRecall', 'OA',
                   'ins_mIoU', 'cls_mIoU'}


def axis_label(key: str) -> str:
    """The y-axis label of ``key``: its unit where it has one."""
    if key.split('/')[-1] in PERCENT_METRICS:
        return f'{key} (%)'
    return {'lr': 'learning rate', 'memory': 'memory (MB)', 'time': 'time (s/iter)',
            'data_time': 'data time (s/iter)'}.get(key, key)


@dataclass
class RunLog:
    """The scalars of one run, split into training and validation lines."""

    path: str
    train: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)

    @property
    def by_epoch(self) -> bool:
        return any('epoch' in line for line in self.train)

    def keys(self) -> tuple[list[str], list[str]]:
        """Numeric keys of the training lines and of the validation lines (first-seen order)."""
        def numeric(lines):
            seen = {}
            for line in lines:
                for k, v in line.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        seen.setdefault(k, None)
            return list(seen)
        return numeric(self.train), numeric(self.val)

    def epoch_end_iter(self, epoch: int) -> int:
        """The last logged iteration of ``epoch`` (the end of the epoch up to the logging interval)."""
        steps = [line.get('step', line.get('iter', 0)) for line in self.train if line.get('epoch', 0) <= epoch]
        return max(steps) if steps else epoch

    def series(self, key: str) -> tuple[str, list[float], list[float]]:
        """(``'train'`` or ``'val'``, x, y) of ``key``; x is the line's ``step``."""
        for kind, lines in (('train', self.train), ('val', self.val)):
            pts = [(line.get('step', line.get('iter', i)), line[key]) for i, line in enumerate(lines)
                   if isinstance(line.get(key), (int, float))]
            if pts:
                return kind, [p[0] for p in pts], [float(p[1]) for p in pts]
        return 'train', [], []


def resolve_log(path: str) -> str:
    """The JSON log of ``path``: the file itself, or the newest ``*/vis_data/scalars.json`` of a work dir."""
    if osp.isfile(path):
        return path
    if osp.isdir(path):
        found = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')) +
                       glob.glob(osp.join(path, 'vis_data', 'scalars.json')))
        if not found:
            raise FileNotFoundError(f'no */vis_data/scalars.json under work dir {path}')
        return max(found, key=osp.getmtime)
    raise FileNotFoundError(f'log file not found: {path}')


def load_log(path: str) -> RunLog:
    """Read one JSON-lines log; raises ``ValueError`` naming the file and line of a malformed line."""
    path = resolve_log(path)
    run = RunLog(path)
    with open(path) as f:
        for lineno, text in enumerate(f, 1):
            text = text.strip()
            if not text:
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path} line {lineno}: not valid JSON ({err.msg}): {text[:80]!r}') from None
            if not isinstance(line, dict):
                raise ValueError(f'{path} line {lineno}: expected a JSON object, got {type(line).__name__}')
            mode = line.get('mode')
            if mode == 'train' or (mode is None and ('lr' in line or 'loss' in line)):
                run.train.append(line)
            else:
                run.val.append(line)
    if not run.train and not run.val:
        raise ValueError(f'{path}: no log lines')
    return run


def default_keys(runs: list[RunLog]) -> list[str]:
    """``loss``, ``lr`` and every validation metric found in any run."""
    keys = []
    for run in runs:
        train, val = run.keys()
        for k in ['loss', 'lr'] + [k for k in val if k not in NON_METRIC]:
            if (k in train or k in val) and k not in keys:
                keys.append(k)
    return keys


def plot_logs(runs: list[RunLog], keys: list[str], out_file: str, legend: list[str] | None = None,
              title: str | None = None) -> str:
    """One subplot per key, one line per run; returns ``out_file``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    if legend is not None and len(legend) != len(runs):
        raise ValueError(f'--legend has {len(legend)} names for {len(runs)} logs')
    names = legend or [_run_name(r.path) for r in runs]
    available = set()
    for run in runs:
        train, val = run.keys()
        available |= set(train) | set(val)
    missing = [k for k in keys if k not in available]
    if missing:
        raise KeyError(f'key(s) {missing} not in any log; available: {sorted(available)}')
    cols = 2 if len(keys) == 4 else min(len(keys), 3)
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        curves = [(j, run, name, *run.series(key)) for j, (run, name) in enumerate(zip(runs, names))]
        curves = [c for c in curves if c[4]]
        # validation steps are epochs in epoch-based runs: keep epochs when every run plotted here
        # counts epochs, else put those runs on the iteration axis
        epochs = [c[3] == 'val' and c[1].by_epoch for c in curves]
        xlabel = 'epoch' if curves and all(epochs) else 'iteration'
        for (j, run, name, kind, xs, ys), is_epoch in zip(curves, epochs):
            if is_epoch and xlabel == 'iteration':
                xs = [run.epoch_end_iter(e) for e in xs]
            ax.plot(xs, ys, marker='o' if len(xs) < 30 else None, markersize=3, label=name, color=f'C{j}')
        ax.set_title(key)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(axis_label(key))
        if key == 'lr' or key.startswith('loss'):
            ys_all = [y for c in curves for y in c[5]]
            if ys_all and min(ys_all) > 0 and max(ys_all) / min(ys_all) > 100:
                ax.set_yscale('log')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file)
    return out_file


def _run_name(path: str) -> str:
    """``<work_dir name>/<timestamp>`` for a standard mmengine layout, else the file name."""
    parts = osp.abspath(path).split(os.sep)
    if len(parts) >= 4 and parts[-2] == 'vis_data':
        return f'{parts[-4]}/{parts[-3]}'
    return osp.basename(path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Plot loss, lr and validation metrics of mmengine JSON logs')
    parser.add_argument('logs', nargs='+', help='scalars.json / <timestamp>.json files or work dirs')
    parser.add_argument('--keys', nargs='+', help='scalars to plot (default: loss, lr and all val metrics)')
    parser.add_argument('--legend', nargs='+', help='one name per log (default: work dir/timestamp)')
    parser.add_argument('--title', help='figure title')
    parser.add_argument('--out', default='log_curves.png', help='output PNG (default: log_curves.png)')
    return parser, parser.parse_args(argv)


def main(argv=None) -> str:
    parser, args = parse_args(argv)
    try:
        runs = [load_log(p) for p in args.logs]
        keys = args.keys or default_keys(runs)
        if not keys:
            parser.error('no loss, lr or metric keys found; pass --keys')
        out = plot_logs(runs, keys, args.out, args.legend, args.title)
    except (FileNotFoundError, ValueError, KeyError) as err:
        parser.error(err.args[0] if isinstance(err, KeyError) else str(err))
    print(f'curves of {", ".join(keys)} written to {out}')
    return out


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
