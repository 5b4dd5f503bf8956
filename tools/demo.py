"""The README's demo: every stage on built-in synthetic data, on CPU, into one work dir.

Stages (``--stages`` picks some, in this order):

``ops``   build every registered op from config, run it, print shapes, parameters, time, FLOPs;
``seg``   generate the synthetic shapes dataset (ADE20K layout) if absent, train the EANet demo
          config with tools/train.py, evaluate with tools/test.py (mIoU table, overlays);
``pc``    train the PCT demo on synthetic primitives with tools/train.py, evaluate with tools/test.py;
``pics``  point-cloud renders (GT | prediction | error), the segmentation sheet, attention maps of
          both domains (``tools/visualize_attention.py``), training curves.

Every stage runs the same tools a researcher would run by hand, and each command is printed.
Usage: ``python tools/demo.py [--work-dir work_dirs/demo] [--stages ops seg pc pics]``.

The test metrics of the three trained demos go to ``<work-dir>/metrics.json``; the run ends by
comparing them with ``tools/assets/demo_metrics.json``, the file the README's demo figures are
generated from (the demo is seeded and deterministic on a given machine).
``python tools/demo.py --update-readme`` copies ``<work-dir>/metrics.json`` there and rewrites the
README block between the ``DEMO-METRICS`` markers; ``tests/tools/test_demo_readme.py`` checks
that the README agrees with the committed file.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
README = ROOT / 'README.md'
COMMITTED_METRICS = ROOT / 'tools' / 'assets' / 'demo_metrics.json'
# run -> (title in the README, headline metrics in order; the first is printed in bold)
HEADLINES = {'seg': ('EANet demo', ('mIoU', 'mAcc', 'aAcc')),
             'pointcloud': ('PCT classification demo', ('OA', 'mAcc')),
             'pointcloud_parts': ('PCT part demo', ('ins_mIoU', 'cls_mIoU'))}
BEGIN, END = '<!-- DEMO-METRICS', '<!-- /DEMO-METRICS -->'

SEG_CONFIG = 'configs/eanet/eanet_r18-d8_1xb8-1k_demo-shapes-64x64.py'
SEG_DATA = 'data/demo_shapes'
PC_CONFIG = 'configs/pct/pct-tiny_1xb16-8e_synthetic-primitives-256.py'      # classification
PC_PARTS_CONFIG = 'configs/pct/pct-tiny_1xb16-10e_synthetic-parts-256.py'    # part segmentation


def sh(*args: str, env: dict | None = None) -> None:
    """Run a tool as a user would, echoing the command; stop the demo if it fails."""
    cmd = [PY, *args]
    prefix = ''.join(f'{k}={v} ' for k, v in (env or {}).items())
    print('\n$ ' + prefix + ' '.join(shlex.quote(str(a)) for a in [Path(PY).name, *args]), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, env=dict(os.environ, **(env or {})))
    print(f'  ({time.time() - t0:.0f} s)', flush=True)


# The trained demos use one intra-op thread: float sums split over threads change with the number of
# cores, and over a thousand steps that moves the figures (measured: 1e-3 in the weights after 6
# iterations, 1 against 2 threads). With one thread `make demo` gives the same metrics on any core count.
ONE_THREAD = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


def latest(pattern: str) -> str:
    hits = sorted(glob.glob(str(ROOT / pattern)), key=os.path.getmtime)
    if not hits:
        raise FileNotFoundError(f'demo: expected a file matching {pattern}, found none')
    return os.path.relpath(hits[-1], ROOT)


def stage_ops(work: Path) -> list[str]:
    sh('tools/benchmark_ops.py', '--quick', '--out', str(work / 'ops'))
    return [str(work / 'ops' / 'results.md')]


def stage_seg(work: Path) -> list[str]:
    if not (ROOT / SEG_DATA / 'images' / 'training').is_dir():
        sh('tools/generate_demo_data.py', '--out', SEG_DATA)
    seg = work / 'seg'
    sh('tools/train.py', SEG_CONFIG, '--work-dir', str(seg), env=ONE_THREAD)
    ckpt = latest(f'{seg}/iter_*.pth')
    sh('tools/test.py', SEG_CONFIG, ckpt, '--work-dir', str(seg / 'test'), '--show-dir', str(seg / 'overlays'),
       '--out', str(seg / 'predictions'), env=ONE_THREAD)
    return [ckpt, str(seg / 'test' / 'test_metrics.json'), str(seg / 'overlays')]


def stage_pc(work: Path) -> list[str]:
    out = []
    for config, name in ((PC_CONFIG, 'pointcloud'), (PC_PARTS_CONFIG, 'pointcloud_parts')):
        pc = work / name
        sh('tools/train.py', config, '--work-dir', str(pc), env=ONE_THREAD)
        ckpt = latest(f'{pc}/epoch_*.pth')
        sh('tools/test.py', config, ckpt, '--work-dir', str(pc / 'test'), env=ONE_THREAD)
        out += [ckpt, str(pc / 'test' / 'test_metrics.json')]
    return out


def stage_pics(work: Path) -> list[str]:
    pics = work / 'pictures'
    seg, pc, parts = work / 'seg', work / 'pointcloud', work / 'pointcloud_parts'
    for config, run, name in ((PC_PARTS_CONFIG, parts, 'pointcloud_parts'), (PC_CONFIG, pc, 'pointcloud')):
        # the synthetic clouds are z-up (ModelNet40 / ShapeNetPart are y-up, the tool's default)
        sh('tools/visualize_pointcloud.py', '--config', config, '--checkpoint', latest(f'{run}/epoch_*.pth'),
           '--split', 'val', '--batch', '--num', '8', '--up', 'z', '--out', str(pics / name))
    sh('tools/visualize_segmentation.py', SEG_CONFIG, latest(f'{seg}/iter_*.pth'), '--num', '4',
       '--out', str(pics / 'segmentation'))
    # attention: EANet's memory units over 4 images; the PCT part demo's offset attention of the most and least
    # focused points, every layer
    sh('tools/visualize_attention.py', SEG_CONFIG, latest(f'{seg}/iter_*.pth'), '--num', '4', '--units', '6',
       '--out', str(pics / 'attention_segmentation'))
    sh('tools/visualize_attention.py', PC_PARTS_CONFIG, latest(f'{parts}/epoch_*.pth'), '--index', '2', '--up', 'z',
       '--out', str(pics / 'attention_pointcloud'))
    sh('tools/analyze_logs.py', str(seg), str(pc), str(parts),
       '--legend', 'eanet-demo-shapes', 'pct-demo-primitives', 'pct-demo-parts', '--out', str(pics / 'curves.png'))
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(str(ROOT / pics / '**' / '*.png'), recursive=True))


STAGES = {'ops': stage_ops, 'seg': stage_seg, 'pc': stage_pc, 'pics': stage_pics}


def write_metrics(work: Path, produced: dict) -> Path:
    """Merge the test metrics of the runs of this demo into ``<work>/metrics.json``."""
    path = ROOT / work / 'metrics.json'
    merged = json.loads(path.read_text()) if path.is_file() else {}
    for paths in produced.values():
        for p, metrics in metrics_of(paths):
            run = Path(p).parent.parent.name  # <work>/<run>/test/test_metrics.json
            if run in HEADLINES:
                merged[run] = metrics
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + '\n')
    return path


def render(metrics: dict) -> str:
    """The README sentence of the demo figures, from a metrics file's content (values as they are)."""
    parts = []
    for run, (title, keys) in HEADLINES.items():
        values = [(k, metrics[run][k]) for k in keys if k in metrics.get(run, {})]
        if values:
            shown = [f'{k} {v:.4g}' for k, v in values]
            parts.append(f'{title}: **{shown[0]}**' + ''.join(f', {x}' for x in shown[1:]) + '.')
    return ' '.join(parts)


def readme_block(metrics: dict) -> str:
    return (f'{BEGIN} generated by `python tools/demo.py --update-readme` from tools/assets/demo_metrics.json -->\n'
            f'{render(metrics)}\n{END}')


def replace_block(text: str, block: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f'README.md has no {BEGIN} ... {END} block to update')
    return text[:start] + block + text[end + len(END):]


def update_readme(work: Path) -> None:
    """Copy ``<work>/metrics.json`` to tools/assets/demo_metrics.json and regenerate the README block."""
    source = ROOT / work / 'metrics.json'
    if not source.is_file():
        raise FileNotFoundError(f'--update-readme: {source} does not exist; run the demo first (make demo)')
    metrics = json.loads(source.read_text())
    missing = sorted(set(HEADLINES) - set(metrics))
    if missing:
        raise ValueError(f'--update-readme: {source} lacks the runs {missing}; run every stage (make demo)')
    COMMITTED_METRICS.write_text(source.read_text())
    README.write_text(replace_block(README.read_text(), readme_block(metrics)))
    print(f'{os.path.relpath(COMMITTED_METRICS, ROOT)} and the README demo figures now read: {render(metrics)}')


def compare_with_readme(path: Path) -> None:
    """Say whether this run's metrics are the ones the README shows."""
    ours = json.loads(path.read_text())
    committed = json.loads(COMMITTED_METRICS.read_text()) if COMMITTED_METRICS.is_file() else {}
    diffs = [f'{run}.{k}: README {committed.get(run, {}).get(k)} / this run {v}'
             for run, m in ours.items() for k, v in m.items() if committed.get(run, {}).get(k) != v]
    if diffs:
        print('README demo figures differ from this run: ' + '; '.join(diffs) +
              '\n  (python tools/demo.py --update-readme makes the README show this run)')
    else:
        print(f'README demo figures: the same as this run ({os.path.relpath(path, ROOT)})')


def metrics_of(paths: list[str]) -> list[tuple[str, dict]]:
    out = []
    for p in paths:
        if p.endswith('.json') and os.path.isfile(ROOT / p):
            with open(ROOT / p) as f:
                out.append((p, json.load(f)))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--stages', nargs='+', choices=list(STAGES), default=list(STAGES))
    parser.add_argument('--update-readme', action='store_true',
                        help='copy <work-dir>/metrics.json to tools/assets/demo_metrics.json and '
                        'regenerate the README demo figures from it (no training)')
    opts = parser.parse_args(argv)
    work = Path(opts.work_dir)
    if opts.update_readme:
        update_readme(work)
        return
    t0, produced = time.time(), {}
    for name in opts.stages:
        print(f'\n=== demo stage: {name} ===', flush=True)
        produced[name] = STAGES[name](work)
    print(f'\n=== demo done in {(time.time() - t0) / 60:.1f} min; outputs ===')
    for name, paths in produced.items():
        for path, m in metrics_of(paths):
            print(f'{name} metrics ({path}): ' + ', '.join(
                f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in m.items()))
        for p in paths:
            print(f'  {name}: {p}')
    if any(metrics_of(paths) for paths in produced.values()):
        compare_with_readme(write_metrics(work, produced))


if __name__ == '__main__':
    main()
