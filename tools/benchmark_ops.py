"""Speed, memory and FLOPs of every registered op, against the catalogue peer in the same run.

For each op and token count N the op is built from config at ``--dim`` channels, fed an input in
its native layout (maps use the squarest H x W with H*W ~ N), and measured:

* time: median of ``--repeats`` timed rounds after warm-up (forward, or forward+backward with
  ``--backward``), in ms; each round runs our op and its peer once, so both share the load of
  the moment;
* activation memory: bytes autograd saves for the backward pass (exact and device-agnostic);
  on CUDA also the peak allocated memory of the step;
* FLOPs: ``torch.utils.flop_counter`` (matmuls, convolutions, SDPA);
* the same for the External-Attention-pytorch catalogue (``fightingcv-attention``) where it has
  the op (built from our op's hyper-parameters by :mod:`tools.peers.catalogue`), so ratios
  compare like with like measured in one process.

Writes ``results.csv``, ``results.md`` and ``time.png`` / ``memory.png`` under ``--out``.

Examples::

    python tools/benchmark_ops.py                                   # all ops, N = 256..4096
    python tools/benchmark_ops.py --ops ExternalAttention MultiHeadAttention --tokens 1024 4096 16384
    python tools/benchmark_ops.py --quick                           # one small size: the demo's op table
    python tools/benchmark_ops.py --ops OffsetAttention --op-kwargs '{"chunk_size": 512}' --backward
    python tools/benchmark_ops.py --linear --dim 64 --batch 1 --backward --repeats 1 --warmup 1 \
        --tokens 16384 65536 262144 1048576 --no-peer       # every O(N) op up to a million tokens
"""
from __future__ import annotations

import argparse
import csv
import json
import os.path as osp
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402

from attn_ops import ATTENTION, build_attention  # noqa: E402
from attn_ops.layouts import MAP, example_input, example_positions, takes_positions  # noqa: E402
from projects import progress  # noqa: E402


# ----------------------------------------------------------------------------- peers
def catalogue_peer(op: nn.Module):
    """(catalogue module with ``op``'s hyper-parameters, input adapter), or None when it has none
    (see :mod:`tools.peers.catalogue`; known defects are fixed so that the peer runs)."""
    try:
        import fightingcv_attention  # noqa: F401  (a test / benchmark dependency)
    except ImportError:
        return None
    from tools.peers.catalogue import PEERS, build_peer
    theirs = build_peer(op, copy_weights=False)
    return None if theirs is None else (theirs, PEERS[type(op).__name__].inputs)


class AtPositions(nn.Module):
    """A point op (its ``forward`` takes ``pos=``) as a one-input module: ``op(x, pos=pos)``."""

    def __init__(self, op: nn.Module, pos: torch.Tensor):
        super().__init__()
        self.op = op
        self.register_buffer('pos', pos, persistent=False)

    def forward(self, x):
        return self.op(x, pos=self.pos)


def example_module(op: nn.Module, x: torch.Tensor) -> nn.Module:
    """``op`` ready to run on the example input ``x`` alone: point ops get
    :func:`~attn_ops.layouts.example_positions` for the tokens of ``x``."""
    if not takes_positions(op):
        return op
    return AtPositions(op, example_positions(x.shape[0], x.shape[1], device=x.device))


# ----------------------------------------------------------------------------- measures
def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _step(module: nn.Module, args, backward: bool):
    out = module(*args)
    if backward:
        out.float().sum().backward()
    return out


CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


def interleaved_ms(fns: list[Callable[[], object]], repeats: int, warmup: int,
                   device: torch.device, clock: str = 'wall') -> list[float]:
    """Median time (ms) of each of ``fns`` over ``repeats`` rounds after ``warmup`` rounds; each
    round runs every function once, so ours and the peer share the machine's load of that moment,
    and the order rotates from round to round, so no function always runs first (measured: the
    first of two 2 ms steps ran ~3% slower than the same step second).

    ``clock='wall'``: elapsed time. ``clock='cpu'``: CPU time of this process (CPU only; with one
    thread it does not count the time other jobs hold the cores, so ratios measured on a busy
    machine stay meaningful; with several threads it also counts their spin-waits)."""
    if clock == 'cpu' and device.type != 'cpu':
        raise ValueError(f"clock='cpu' measures CPU time and cannot time work on {device}; use clock='wall'")
    now = CLOCKS[clock]
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    pairs = list(zip(fns, samples))
    for r in range(repeats):
        k = r % len(pairs)
        for fn, times in pairs[k:] + pairs[:k]:
            sync(device)
            t0 = now()
            fn()
            sync(device)
            times.append((now() - t0) * 1e3)
    return [statistics.median(times) for times in samples]


def saved_bytes(module, args) -> int:
    """Bytes of tensors autograd keeps for backward (each storage counted once)."""
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(*args)
    return total


def peak_cuda_bytes(module, args, backward, device) -> int | None:
    if device.type != 'cuda':
        return None
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    _step(module, args, backward)
    sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def _count_cpu_sdpa() -> None:
    """torch's FLOP counter knows the CUDA SDPA kernels but not the CPU flash kernel; count it
    with the same formula (two batched matmuls, 4 b h n m d)."""
    from torch.utils import flop_counter as fc
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in fc.flop_registry:
        return

    @fc.register_flop_formula(op)
    def _sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of matmuls, convolutions and SDPA (``torch.utils.flop_counter``) that ``fn`` runs
    without autograd."""
    from torch.utils.flop_counter import FlopCounterMode
    _count_cpu_sdpa()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def flops(module, args) -> int:
    """Forward FLOPs of ``module`` on ``args``."""
    return count_flops(lambda: module(*(a.detach() for a in args)))  # grad-requiring views trip the tracker


def measure(module, args, opts, device) -> tuple[dict, Callable[[], object]]:
    """Memory and FLOPs of ``module`` on ``args``, and the step to time (forward, or forward +
    backward with ``--backward``)."""
    module.train(opts.backward)
    args = tuple(a.detach().requires_grad_(opts.backward) for a in args)
    row = dict(act_mib=saved_bytes(module, args) / 2 ** 20, gflops=flops(module, args) / 1e9)
    peak = peak_cuda_bytes(module, args, opts.backward, device)
    if peak is not None:
        row['peak_mib'] = peak / 2 ** 20
    return row, lambda: _step(module, args, opts.backward)


# ----------------------------------------------------------------------------- driver
def build(name: str, dim: int, **kwargs) -> nn.Module:
    return build_attention(dict(type=name, **kwargs), dim=dim)


def run(opts) -> list[dict]:
    device = torch.device(opts.device)
    torch.manual_seed(0)
    names = opts.ops or sorted(n for n in ATTENTION.module_dict
                               if not opts.linear or ATTENTION.get(n).complexity == 'O(N)')
    rows = []
    for name in progress.track(names, desc='benchmark (ops)', quiet=opts.quiet):
        for n in opts.tokens:
            op = build(name, opts.dim, **opts.op_kwargs).to(device)
            x = example_input(op.layout, opts.dim, batch=opts.batch, tokens=n, device=device)
            shape = tuple(x.shape)
            try:
                ours, step = measure(example_module(op, x), (x,), opts, device)
                step()   # the first warm-up step: fails here (out of memory at large N) before any timing
            except RuntimeError as err:
                progress.write(f'{name} N={n}: {err.__class__.__name__}: {str(err).splitlines()[0]}')
                continue
            label = name + (f'({", ".join(f"{k}={v}" for k, v in opts.op_kwargs.items())})' if opts.op_kwargs else '')
            row = dict(op=label, layout=op.layout, N=x.shape[1] if op.layout != MAP else shape[2] * shape[3],
                       input=str(shape), params=sum(p.numel() for p in op.parameters()), **ours)
            theirs = None
            peer = None if opts.no_peer else catalogue_peer(op)
            if peer is not None:
                module, adapt = peer
                try:
                    theirs, peer_step = measure(module.to(device), adapt(x), opts, device)
                    peer_step()
                except RuntimeError as err:  # a catalogue module defined for one size only (ViP's S x S)
                    progress.write(f'{name} N={n}: the catalogue peer cannot run this input: '
                                   f'{str(err).splitlines()[0]}')
                    theirs = None
            steps = [step] if theirs is None else [step, peer_step]
            times = interleaved_ms(steps, opts.repeats, max(opts.warmup - 1, 0), device, opts.clock)
            row['time_ms'] = times[0]
            if theirs is not None:
                theirs['time_ms'] = times[1]
                row.update({f'peer_{k}': v for k, v in theirs.items()})
                row['time_ratio'] = times[0] / times[1]
                row['mem_ratio'] = ours['act_mib'] / theirs['act_mib'] if theirs['act_mib'] else float('nan')
            rows.append(row)
            progress.write(_line(row))
    return rows


def _line(r: dict) -> str:
    s = (f"{r['op']:<28} {r['layout']:<6} N={r['N']:<6} params={r['params']:<8} "
         f"time={r['time_ms']:.3f}ms act={r['act_mib']:.2f}MiB {r['gflops']:.3f}GFLOP")
    if 'time_ratio' in r:
        s += f"  vs catalogue: time x{r['time_ratio']:.2f}, memory x{r['mem_ratio']:.2f}"
    return s


COLUMNS = ['op', 'layout', 'N', 'input', 'params', 'time_ms', 'act_mib', 'gflops', 'peak_mib',
           'peer_time_ms', 'peer_act_mib', 'time_ratio', 'mem_ratio']


def _fmt(v):
    if isinstance(v, float):
        return f'{v:.3g}' if abs(v) < 100 else f'{v:.0f}'
    return '' if v is None else str(v)


def write(rows: list[dict], out: Path, opts) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    with open(out / 'results.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=cols, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    head = (f"device={opts.device} dim={opts.dim} batch={opts.batch} "
            f"{'forward+backward' if opts.backward else 'forward'}, median of {opts.repeats}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {opts.clock} clock\n\n")
    table = '| ' + ' | '.join(cols) + ' |\n|' + '---|' * len(cols) + '\n'
    table += ''.join('| ' + ' | '.join(_fmt(r.get(c)) for c in cols) + ' |\n' for r in rows)
    (out / 'results.md').write_text(head + table)
    if len({r['N'] for r in rows}) > 1:
        _plot(rows, out)
    print(f'wrote {out / "results.csv"}, {out / "results.md"}'
          + (f', {out / "time.png"}, {out / "memory.png"}' if (out / 'time.png').exists() else ''))


def _plot(rows, out: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(r['op'] for r in rows))
    many = len(names) > 10      # colours repeat every 10: vary the line style, legend beside the axes
    for key, label, fname in (('time_ms', 'median time (ms)', 'time.png'),
                              ('act_mib', 'activation memory for backward (MiB)', 'memory.png')):
        fig, ax = plt.subplots(figsize=(10, 5.5) if many else (7, 4.5), dpi=110)
        for i, name in enumerate(names):
            pts = [r for r in rows if r['op'] == name]
            line, = ax.plot([r['N'] for r in pts], [r[key] for r in pts], marker='o', label=name,
                            ls=('-', '--', ':', '-.')[i // 10 % 4])
            if any(f'peer_{key}' in r for r in pts):
                ax.plot([r['N'] for r in pts if f'peer_{key}' in r], [r[f'peer_{key}'] for r in pts if f'peer_{key}' in r],
                        ls='--', marker='x', color=line.get_color(), label=f'{name} (catalogue)')
        ax.set(xscale='log', yscale='log', xlabel='tokens N', ylabel=label)
        ax.grid(True, which='both', alpha=0.3)
        if many:
            ax.legend(fontsize=6.5, loc='center left', bbox_to_anchor=(1.01, 0.5), ncol=1 + len(names) // 36)
        else:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / fname)
        plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--ops', nargs='+', help='registered op names (default: all)')
    p.add_argument('--linear', action='store_true', help='only the ops linear in N (complexity O(N))')
    p.add_argument('--tokens', nargs='+', type=int, default=[256, 1024, 4096])
    p.add_argument('--dim', type=int, default=64)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--warmup', type=int, default=2, help='untimed rounds before timing (the first checks that each step runs)')
    p.add_argument('--backward', action='store_true', help='time forward + backward')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, help='torch intra-op threads (default: torch\'s choice)')
    p.add_argument('--clock', choices=sorted(CLOCKS), default='wall',
                   help='wall: elapsed time; cpu: this process\'s CPU time (CPU only; use with --threads 1 '
                        'on a shared machine)')
    p.add_argument('--no-peer', action='store_true', help='skip the catalogue peer')
    p.add_argument('--quick', action='store_true', help='one small size, 3 repeats (op table)')
    p.add_argument('--op-kwargs', type=json.loads, default={},
                   help='JSON of extra constructor arguments for the selected ops (the peer gets the same)')
    p.add_argument('--out', default='work_dirs/benchmark_ops')
    progress.add_quiet_argument(p)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.tokens, opts.repeats, opts.warmup = [256], 3, 1
    unknown = [n for n in opts.ops or [] if ATTENTION.get(n) is None]
    if unknown:
        from attn_ops.registry import close_names
        p.error('unknown op(s): ' + ', '.join(f'{n} (close: {", ".join(close_names(n, ATTENTION)) or "none"})'
                                             for n in unknown))
    return opts


def main(argv=None):
    opts = parse_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    rows = run(opts)
    write(rows, Path(opts.out), opts)
    return rows


if __name__ == '__main__':
    main()
