"""The leaderboard: every registered op trained and evaluated in the same head and network on the
same data, its accuracy beside its cost.

* ``seg``: each op that returns features (kind ``attention``, ``block`` or ``gate``; map and token
  ops alike, token ops through the layout adapter) in :class:`AttnHead` over a small fixed stem,
  trained from scratch on :mod:`projects.segmentation.context_shapes`, where a corner cue's colour
  decides the class of shapes beyond the receptive field of stem + head; mmseg's ``FCNHead`` (the
  same head without the op) is the baseline row. Metric: mIoU on the validation split.
* ``pc``: each token op in the 4 attention layers of the tiny PCT on the synthetic primitives
  (classification, equal-size clouds). Metric: overall accuracy (OA).

Every run is seeded per op (not per process) and runs on one thread, so the table is the same for
any ``--jobs``. Cost, measured in the worker at the leaderboard's size: parameters of the whole
network, forward FLOPs per image / cloud (``tools.benchmark_ops.flops``), training time per
iteration (ms, one thread), and the activation memory autograd keeps for backward in one training
step (``tools.benchmark_ops.saved_bytes``). Settings (data sizes, iterations, learning rates) are in
``--config``.

Writes ``results.csv``, ``results.md``, ``pareto_seg.png`` and ``pareto_pc.png`` (accuracy vs
forward FLOPs, Pareto front marked) under ``--out``; ``--write-readme`` also copies them to
``tools/assets/leaderboard/`` and rewrites README.md between the LEADERBOARD markers.

    python tools/leaderboard.py --jobs 2 --write-readme               # the full board (README)
    python tools/leaderboard.py --ops ExternalAttention MultiHeadAttention --tasks seg
    python tools/leaderboard.py --quick                               # 2 ops, a few iterations (tests)
"""
from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import os
import os.path as osp
import shutil
import sys
import time
import traceback
from functools import lru_cache
from pathlib import Path

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from torch import nn  # noqa: E402

from attn_ops import ATTENTION, feature_ops  # noqa: E402
from attn_ops.layouts import TOKENS  # noqa: E402
from projects.progress import add_quiet_argument, track  # noqa: E402
from projects.progress import write as write_line  # noqa: E402
from tools.benchmark_ops import flops, saved_bytes  # noqa: E402

CONFIG = osp.join(ROOT, 'configs/leaderboard/leaderboard_context-shapes-64x64_primitives-256.py')
BASELINE = 'FCNHead'
GLOBAL_REFS = ('MultiHeadAttention', 'ExternalAttention')   # named beside the baseline in the README
TASKS = ('seg', 'pc')
METRIC = dict(seg='mIoU', pc='OA')
ASSETS = Path(ROOT) / 'tools' / 'assets' / 'leaderboard'
BEGIN = '<!-- LEADERBOARD:BEGIN (python tools/leaderboard.py --jobs 2 --write-readme) -->'
END = '<!-- LEADERBOARD:END -->'
COLUMNS = ['task', 'op', 'kind', 'layout', 'metric', 'score', 'params', 'mflops', 'train_ms_per_iter',
           'act_mib', 'iters', 'error']
# one-thread CPU seconds per training iteration (evaluation and cost measurement spread over the
# iterations), from the user time of a 10-run validation board: only for the estimate printed at start
EST_S_PER_ITER = dict(seg=0.09, pc=0.25)


# ----------------------------------------------------------------------------- op selection
def seg_ops() -> list[str]:
    """Ops that can go in AttnHead: every registered op except ``pool`` ops; the baseline first."""
    return [BASELINE] + feature_ops()


def pc_ops() -> list[str]:
    """Token ops that can be PCT's attention layers (``pool`` ops excluded)."""
    return feature_ops(TOKENS)


# ----------------------------------------------------------------------------- segmentation
class Stem(nn.Sequential):
    """Three 3x3 conv-BN-ReLU layers, strides 2, 2, 1: (B, 3, H, W) -> (B, C, H/4, W/4); receptive
    field 15 pixels."""

    def __init__(self, channels: int):
        layers, c_in = [], 3
        for c_out, stride in ((channels // 2, 2), (channels, 2), (channels, 1)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        super().__init__(*layers)


class SegNet(nn.Module):
    """:class:`Stem` + a decode head; logits upsampled to the input size.

    Shapes: (B, 3, H, W) -> (B, num_classes, H, W)."""

    def __init__(self, head: nn.Module, channels: int):
        super().__init__()
        self.stem, self.head = Stem(channels), head

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head([self.stem(img)]), size=img.shape[-2:], mode='bilinear', align_corners=False)


def build_seg_net(name: str, cfg: dict) -> SegNet:
    """The leaderboard's segmentation network with op ``name`` in AttnHead (or mmseg's FCNHead)."""
    from projects.runtime import install_compat
    install_compat()
    from mmseg.models.decode_heads import FCNHead
    from projects.segmentation.attn_head import AttnHead
    from projects.segmentation.context_shapes import CLASSES
    c = cfg['channels']
    kw = dict(in_channels=c, channels=c, num_classes=len(CLASSES), norm_cfg=dict(type='BN', requires_grad=True),
              dropout_ratio=0.1, concat_input=True)
    with DefaultScope.overwrite_default_scope('mmseg'):   # whatever scope the caller left current
        head = FCNHead(num_convs=2, **kw) if name == BASELINE else AttnHead(attn=dict(type=name), **kw)
    return SegNet(head, c)


@lru_cache(maxsize=2)
def seg_data(size: int, gap: int, cue_size: int, num_train: int, num_val: int, seed: int):
    """(train images, train labels, val images, val labels): float images (B, 3, H, W) normalised
    per channel, long labels (B, H, W)."""
    from projects.segmentation.context_shapes import make_split
    out = []
    for split, num in (('train', num_train), ('val', num_val)):
        img, label = make_split(num, size=size, seed=seed, split=split, gap=gap, cue_size=cue_size)
        img = torch.from_numpy(img).permute(0, 3, 1, 2).float()
        out += [(img - 127.5) / 64.0, torch.from_numpy(label).long()]
    return tuple(out)


def run_seg(name: str, cfg: dict) -> dict:
    torch.manual_seed(cfg['seed'])
    model = build_seg_net(name, cfg)
    x, y, vx, vy = seg_data(cfg['size'], cfg['gap'], cfg['cue_size'], cfg['num_train'], cfg['num_val'], cfg['seed'])
    loss_fn = lambda m, i: F.cross_entropy(m(x[i]), y[i])  # noqa: E731
    score_fn = lambda m: _miou(m, vx, vy, model.head.num_classes)  # noqa: E731
    return _train(model, loss_fn, score_fn, x[:1], x.shape[0], cfg)


@torch.no_grad()
def _miou(model: nn.Module, img: torch.Tensor, label: torch.Tensor, num_classes: int) -> float:
    from projects.pointcloud.metrics import confusion_matrix, iou_from_confusion
    pred = torch.cat([model(img[i:i + 32]).argmax(1) for i in range(0, img.shape[0], 32)])
    return float(np.nanmean(iou_from_confusion(confusion_matrix(pred, label, num_classes))))


# ----------------------------------------------------------------------------- point clouds
@lru_cache(maxsize=2)
def pc_data(num_points: int, num_train: int, num_val: int, seed: int):
    """(train points (B, N, 3), train labels (B,), val points, val labels) of the primitives."""
    from projects.pointcloud.datasets.synthetic import SyntheticPrimitives
    out = []
    for split, num in (('train', num_train), ('test', num_val)):
        ds = SyntheticPrimitives(num_samples=num, num_points=num_points, task='cls', split=split, seed=seed)
        out += [torch.from_numpy(np.stack([s[0] for s in ds.samples])),
                torch.tensor([s[1] for s in ds.samples], dtype=torch.long)]
    return tuple(out)


def _augment(pts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The demo config's training augmentation: scale 0.85-1.15, shift 0.1, rotation about z."""
    b = pts.shape[0]
    theta = torch.rand(b, generator=gen) * 2 * math.pi
    cos, sin, zero, one = theta.cos(), theta.sin(), torch.zeros(b), torch.ones(b)
    rot = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], 1).view(b, 3, 3)
    scale = 0.85 + 0.3 * torch.rand(b, 1, 3, generator=gen)
    shift = 0.2 * torch.rand(b, 1, 3, generator=gen) - 0.1
    return pts @ rot.transpose(1, 2) * scale + shift


def run_pc(name: str, cfg: dict) -> dict:
    from projects.pointcloud.models.base import smooth_cross_entropy
    from projects.pointcloud.registry import MODELS
    import projects.pointcloud.models  # noqa: F401  (registers the networks)
    torch.manual_seed(cfg['seed'])
    with DefaultScope.overwrite_default_scope(MODELS.scope):
        model = MODELS.build(dict(cfg['model'], attn=dict(type=name)))
    x, y, vx, vy = pc_data(cfg['num_points'], cfg['num_train'], cfg['num_val'], cfg['seed'])
    gen = torch.Generator().manual_seed(cfg['seed'] + 1)
    loss_fn = lambda m, i: smooth_cross_entropy(m.logits(_augment(x[i], gen)), y[i], m.label_smoothing)  # noqa: E731

    @torch.no_grad()
    def score_fn(m):
        pred = torch.cat([m.logits(vx[i:i + 64]).argmax(-1) for i in range(0, vx.shape[0], 64)])
        return float((pred == vy).float().mean())
    return _train(model, loss_fn, score_fn, x[:1], x.shape[0], cfg)


# ----------------------------------------------------------------------------- one run
def _train(model: nn.Module, loss_fn, score_fn, one: torch.Tensor, num_train: int, cfg: dict) -> dict:
    """Train ``cfg['iters']`` AdamW steps (cosine learning rate, seeded batches), then score. The
    cost is measured on the same model first (its activation memory by one extra training forward,
    seeded like the rest, so it is part of every run alike)."""
    model.eval()
    row = dict(params=sum(p.numel() for p in model.parameters()), mflops=flops(model, (one,)) / 1e6)
    model.train()
    bs, iters = cfg['batch_size'], cfg['iters']
    row['act_mib'] = saved_bytes(_Loss(model, loss_fn), (torch.arange(bs),)) / 2 ** 20
    opt = torch.optim.AdamW(model.parameters(), lr=cfg['lr'], weight_decay=cfg['weight_decay'])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters, eta_min=cfg['lr'] * 0.01)
    gen = torch.Generator().manual_seed(cfg['seed'])
    order = torch.randperm(num_train, generator=gen)
    start, pos = time.perf_counter(), 0
    for _ in range(iters):
        if pos + bs > num_train:
            order, pos = torch.randperm(num_train, generator=gen), 0
        loss = loss_fn(model, order[pos:pos + bs])
        pos += bs
        if not torch.isfinite(loss):
            raise FloatingPointError(f'non-finite loss {loss.item()}')
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    row['train_ms_per_iter'] = (time.perf_counter() - start) / iters * 1e3
    model.eval()
    row['score'] = 100.0 * score_fn(model)   # percent, as mmseg's and our point-cloud metrics
    return row


class _Loss(nn.Module):
    """``loss_fn(model, idx)`` as a module, for :func:`saved_bytes` of one training step."""

    def __init__(self, model, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, idx):
        return self.loss_fn(self.model, idx)


def run_one(job: tuple) -> dict:
    """One (task, op, cfg) run on one thread; failures become a row with ``error`` set."""
    task, name, cfg = job
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # restored below: an in-process run (--jobs 1) leaves the caller's setting
    cls = ATTENTION.get(name)
    row = dict(task=task, op=name, kind=cls.kind if cls else 'baseline', layout=cls.layout if cls else 'map',
               metric=METRIC[task], iters=cfg['iters'], error='')
    start = time.perf_counter()
    try:
        row.update((run_seg if task == 'seg' else run_pc)(name, cfg))
    except Exception as e:  # noqa: BLE001  (one op's failure must not stop the board)
        row['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
        traceback.print_exc()
    finally:
        torch.set_num_threads(threads)
    row['wall_s'] = time.perf_counter() - start
    return row


# ----------------------------------------------------------------------------- outputs
def _fmt(v) -> str:
    if isinstance(v, float):
        return f'{v:.3f}' if abs(v) < 10 else f'{v:.1f}'
    return '' if v is None else str(v)


def pareto(rows: list[dict]) -> list[dict]:
    """Rows not dominated in (lower ``mflops``, higher ``score``), by increasing cost."""
    front, best = [], -math.inf
    for r in sorted(rows, key=lambda r: (float(r['mflops']), -float(r['score']))):
        if float(r['score']) > best:
            front.append(r)
            best = float(r['score'])
    return front


def read_csv(path) -> list[dict]:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def context_gap(rows: list[dict]) -> str:
    """One sentence: FCNHead's mIoU, the global-attention references' and the best op's, with gaps."""
    score = {r['op']: float(r['score']) for r in rows}
    if BASELINE not in score or len(score) < 2:
        return ''
    base = score[BASELINE]
    best = max((n for n in score if n != BASELINE), key=score.get)
    refs = [n for n in GLOBAL_REFS if n in score and n != best] + [best]
    parts = [f'{n} {score[n]:.1f} ({score[n] - base:+.1f})' for n in refs]
    return (f'Without an op (FCNHead) {base:.1f} mIoU; with global context: ' + ', '.join(parts[:-1])
            + ('; ' if parts[:-1] else '') + f'best op {parts[-1]}.\n\n')


def markdown(rows: list[dict]) -> str:
    """The README block: settings, the context gap (FCNHead vs the best op), one table per task
    sorted by score, Pareto-front ops in bold."""
    text = ''
    for task in TASKS:
        done = [r for r in rows if r['task'] == task and not r.get('error')]
        failed = [r for r in rows if r['task'] == task and r.get('error')]
        if not done and not failed:
            continue
        front = {r['op'] for r in pareto(done)}
        title = ('Segmentation, ContextShapes 64 x 64 (mIoU, validation split)' if task == 'seg'
                 else 'Point clouds, synthetic primitives 256 points (OA, test split)')
        text += f'**{title}**, {done[0]["iters"] if done else failed[0]["iters"]} iterations per op'
        text += ' (in bold: the Pareto front of score vs forward FLOPs).\n\n'
        if task == 'seg':
            text += context_gap(done)
        text += ('| rank | op | kind | layout | ' + METRIC[task] + ' | params | MFLOPs | train ms/iter | '
                 'activation MiB |\n|---|---|---|---|---|---|---|---|---|\n')
        for i, r in enumerate(sorted(done, key=lambda r: -float(r['score'])), 1):
            op = f'**{r["op"]}**' if r['op'] in front else r['op']
            text += (f'| {i} | {op} | {r["kind"]} | {r["layout"]} | {float(r["score"]):.1f} | '
                     f'{int(float(r["params"])):,} | {float(r["mflops"]):.1f} | '
                     f'{float(r["train_ms_per_iter"]):.1f} | {float(r["act_mib"]):.1f} |\n')
        for r in failed:
            text += f'| - | {r["op"]} | {r["kind"]} | {r["layout"]} | failed: {r["error"]} | | | | |\n'
        text += '\n'
    return text.rstrip('\n') + '\n'


def write(rows: list[dict], out: Path, head: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / 'results.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction='ignore')
        writer.writeheader()
        writer.writerows({k: _fmt(v) if isinstance(v, float) and k != 'score' else v for k, v in r.items()}
                         for r in rows)
    (out / 'results.md').write_text(head + '\n\n' + markdown(read_csv(out / 'results.csv')))
    for task in TASKS:
        done = [r for r in read_csv(out / 'results.csv') if r['task'] == task and not r['error']]
        if done:
            plot(done, out / f'pareto_{task}.png', task)
    print(f'wrote {out}/results.csv, results.md and the Pareto plots')


def plot(rows: list[dict], path: Path, task: str) -> None:
    import logging
    for name in ('matplotlib', 'matplotlib.font_manager'):
        logging.getLogger(name).setLevel(logging.ERROR)   # no font-fallback chatter
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    xs, ys = [float(r['mflops']) for r in rows], [float(r['score']) for r in rows]
    ax.scatter(xs, ys, s=18, color='tab:blue', label='op')
    front = pareto(rows)
    ax.step([float(r['mflops']) for r in front], [float(r['score']) for r in front], where='post',
            color='tab:red', lw=1.2, label='Pareto front')
    for r in rows:
        on = r in front
        ax.annotate(r['op'], (float(r['mflops']), float(r['score'])), fontsize=7 if on else 5,
                    color='tab:red' if on else 'grey', xytext=(3, 2), textcoords='offset points')
    base = [r for r in rows if r['op'] == BASELINE]
    if base:
        ax.axhline(float(base[0]['score']), color='grey', ls='--', lw=0.8, label='FCNHead (no op)')
    ax.set(xscale='log', xlabel='forward MFLOPs per ' + ('image' if task == 'seg' else 'cloud'),
           ylabel=METRIC[task], title=f'leaderboard ({task}): {METRIC[task]} vs cost')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def readme_block(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f'README.md has no leaderboard markers: add a line "{BEGIN}" and a line "{END}"')
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip('\n') + '\n'


def merge_rows(board: list[dict], fresh: list[dict]) -> list[dict]:
    """``board`` with the rows of the (task, op) pairs in ``fresh`` replaced in place; pairs new to
    the board go at the end of it."""
    new = {(r['task'], r['op']): r for r in fresh}
    merged = [new.pop((r['task'], r['op']), r) for r in board]
    return merged + list(new.values())


def write_readme(out: Path, readme: Path, merge: bool = False) -> None:
    """Copy the CSV and plots to tools/assets/leaderboard/ and rewrite the README block from the CSV.
    ``merge`` (a run of some ops): their rows replace theirs in the stored board, the others stay,
    and the plots are drawn again from the merged board."""
    ASSETS.mkdir(parents=True, exist_ok=True)
    stored = ASSETS / 'results.csv'
    if merge and stored.exists():
        rows = merge_rows(read_csv(stored), read_csv(out / 'results.csv'))
        with open(stored, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        for task in TASKS:
            done = [r for r in rows if r['task'] == task and not r['error']]
            if done:
                plot(done, ASSETS / f'pareto_{task}.png', task)
    else:
        for name in ('results.csv', 'pareto_seg.png', 'pareto_pc.png'):
            if (out / name).exists():
                shutil.copy(out / name, ASSETS / name)
    block = markdown(read_csv(stored))
    text = readme.read_text()
    readme_block(text)
    head, rest = text.split(BEGIN, 1)
    readme.write_text(head + BEGIN + '\n' + block + END + rest.split(END, 1)[1])
    print(f'wrote the leaderboard block to {readme} and its CSV / plots to {ASSETS}'
          + (' (rows of this run merged into the stored board)' if merge else ''))


# ----------------------------------------------------------------------------- driver
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', default=CONFIG, help='settings of both tasks (seg=dict(...), pc=dict(...))')
    p.add_argument('--ops', nargs='+', help=f'op names (and/or {BASELINE}); default: every op that fits the task')
    p.add_argument('--tasks', nargs='+', choices=TASKS, default=list(TASKS))
    p.add_argument('--iters', type=int, help='training iterations per op (both tasks; default: the config)')
    p.add_argument('--jobs', type=int, default=1, help='worker processes, one thread each (same table for any N)')
    p.add_argument('--quick', action='store_true', help='2 ops, 5 iterations, small data: a smoke run')
    p.add_argument('--out', default='work_dirs/leaderboard')
    p.add_argument('--write-readme', action='store_true', help='copy the results to tools/assets/leaderboard/ '
                   'and rewrite README.md between the LEADERBOARD markers (with --ops: the rows of those ops '
                   'replace theirs in the stored board)')
    p.add_argument('--readme', default=osp.join(ROOT, 'README.md'))
    add_quiet_argument(p)
    opts = p.parse_args(argv)
    if opts.jobs < 1:
        p.error(f'--jobs must be >= 1, got {opts.jobs}')
    unknown = [n for n in opts.ops or [] if n != BASELINE and ATTENTION.get(n) is None]
    if unknown:
        from attn_ops.registry import close_names
        p.error('unknown op(s): ' + ', '.join(f'{n} (close: {", ".join(close_names(n, ATTENTION)) or "none"})'
                                             for n in unknown))
    return opts


def jobs(opts) -> list[tuple]:
    cfg = Config.fromfile(opts.config)
    ops = opts.ops or (['FCNHead', 'ExternalAttention'] if opts.quick else None)
    out = []
    for task in opts.tasks:
        tcfg = dict(cfg[task])
        if opts.quick:
            tcfg.update(iters=5, num_train=32, num_val=16, batch_size=8)
        if opts.iters:
            tcfg['iters'] = opts.iters
        allowed = seg_ops() if task == 'seg' else pc_ops()
        names = [n for n in allowed if ops is None or n in ops]
        out += [(task, n, tcfg) for n in names]
    return out


def main(argv=None) -> list[dict]:
    opts = parse_args(argv)
    todo = jobs(opts)
    if not todo:
        raise SystemExit('no op fits the selected tasks (pool ops go in neither; map ops only in seg)')
    est = sum(cfg['iters'] * EST_S_PER_ITER[task] for task, _, cfg in todo) / min(opts.jobs, len(todo))
    print(f'leaderboard: {len(todo)} runs ({", ".join(f"{t}: {sum(j[0] == t for j in todo)}" for t in opts.tasks)}), '
          f'{opts.jobs} job(s) x 1 thread; estimated {est / 60:.0f} min on an idle machine', flush=True)
    rows, start = [], time.perf_counter()
    if opts.jobs == 1:
        results = map(run_one, todo)
    else:
        pool = mp.get_context('spawn').Pool(min(opts.jobs, len(todo)))
        results = pool.imap_unordered(run_one, todo)
    for i, r in enumerate(track(results, total=len(todo), desc='leaderboard', quiet=opts.quiet), 1):
        rows.append(r)
        status = (f'FAILED {r["error"]}' if r['error']
                  else f'{r["metric"]} {r["score"]:.1f}, {r["train_ms_per_iter"]:.0f} ms/iter')
        write_line(f'[{i}/{len(todo)}] {r["task"]} {r["op"]}: {status} ({r["wall_s"]:.0f} s, '
                   f'{(time.perf_counter() - start) / 60:.1f} min elapsed)')
    if opts.jobs > 1:
        pool.close()
        pool.join()
    order = {(t, n): i for i, (t, n, _) in enumerate(todo)}
    rows.sort(key=lambda r: order[r['task'], r['op']])
    minutes = (time.perf_counter() - start) / 60
    head = (f'tools/leaderboard.py --config {osp.relpath(opts.config, ROOT)}: one thread per run, torch '
            f'{torch.__version__}, {len(rows)} runs in {minutes:.1f} min with --jobs {opts.jobs}, '
            f'load average {os.getloadavg()[0]:.1f} at the end')
    out = Path(opts.out)
    write(rows, out, head)
    if opts.write_readme:
        write_readme(out, Path(opts.readme), merge=bool(opts.ops))
    return rows


if __name__ == '__main__':
    main()
