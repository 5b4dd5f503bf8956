"""The README's demo: every stage on built-in synthetic data, on CPU, into one work dir.

Stages (``--stages`` picks some, in this order):

``ops``   build every registered op from config, run it, print shapes, parameters, time, FLOPs;
``seg``   generate the synthetic shapes dataset (ADE20K layout) if absent, train the EANet demo
          config with tools/train.py, evaluate with tools/test.py (mIoU table, overlays);
``pc``    train the PCT demo on synthetic primitives with tools/train.py, evaluate with tools/test.py;
``pics``  point-cloud renders (GT | prediction | error), the segmentation sheet, training curves.

Every stage runs the same tools a researcher would run by hand, and each command is printed.
Usage: ``python tools/demo.py [--work-dir work_dirs/demo] [--stages ops seg pc pics]``.
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

SEG_CONFIG = 'configs/eanet/eanet_r18-d8_1xb8-1k_demo-shapes-64x64.py'
SEG_DATA = 'data/demo_shapes'
PC_CONFIG = 'configs/pct/pct-tiny_1xb16-8e_synthetic-primitives-256.py'      # classification
PC_PARTS_CONFIG = 'configs/pct/pct-tiny_1xb16-10e_synthetic-parts-256.py'    # part segmentation


def sh(*args: str) -> None:
    """Run a tool as a user would, echoing the command; stop the demo if it fails."""
    cmd = [PY, *args]
    print('\n$ ' + ' '.join(shlex.quote(str(a)) for a in [Path(PY).name, *args]), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    print(f'  ({time.time() - t0:.0f} s)', flush=True)


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
    sh('tools/train.py', SEG_CONFIG, '--work-dir', str(seg))
    ckpt = latest(f'{seg}/iter_*.pth')
    sh('tools/test.py', SEG_CONFIG, ckpt, '--work-dir', str(seg / 'test'), '--show-dir', str(seg / 'overlays'),
       '--out', str(seg / 'predictions'))
    return [ckpt, str(seg / 'test' / 'test_metrics.json'), str(seg / 'overlays')]


def stage_pc(work: Path) -> list[str]:
    out = []
    for config, name in ((PC_CONFIG, 'pointcloud'), (PC_PARTS_CONFIG, 'pointcloud_parts')):
        pc = work / name
        sh('tools/train.py', config, '--work-dir', str(pc))
        ckpt = latest(f'{pc}/epoch_*.pth')
        sh('tools/test.py', config, ckpt, '--work-dir', str(pc / 'test'))
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
    sh('tools/analyze_logs.py', str(seg), str(pc), str(parts),
       '--legend', 'eanet-demo-shapes', 'pct-demo-primitives', 'pct-demo-parts', '--out', str(pics / 'curves.png'))
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(str(ROOT / pics / '**' / '*.png'), recursive=True))


STAGES = {'ops': stage_ops, 'seg': stage_seg, 'pc': stage_pc, 'pics': stage_pics}


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
    opts = parser.parse_args(argv)
    work = Path(opts.work_dir)
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


if __name__ == '__main__':
    main()
