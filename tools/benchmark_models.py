"""Heads and networks against their peers, measured side by side in one run.

Three parts (``--parts``), each written as CSV, markdown and a plot under ``--out``:

* ``heads``: decode heads on one backbone feature map per ``--maps`` size (default
  2 x 2048 x 64 x 64 and 2 x 2048 x 32 x 32): our ``EAHead`` and ``AttnHead`` with every
  registered op, and mmseg's ``FCNHead``, ``NLHead``, ``DAHead``, ``CCHead``, ``EMAHead``,
  ``ISAHead``, each built from its published config (``configs/_base_/models`` here, mmseg's
  ``.mim/configs/_base_/models`` for mmseg's; BN instead of SyncBN, ``in_index=0``). A head that
  cannot run (mmcv-lite lacks an op) is listed with the error;
* ``pct``: ``PCT``, ``SimplePCT``, ``NaivePCT`` against PCT_Pytorch's ``Pct`` rebuilt here from
  its published layer list (:class:`PCTPytorch`; same input, the same farthest point sampling);
* ``point_ops``: farthest point sampling, kNN and ball query against the loop this library used
  before and the full-matrix formulas of PCT_Pytorch / PointNet++.

Per row: parameters, forward GFLOPs (``torch.utils.flop_counter``), the median time of
``--repeats`` runs after ``--warmup`` (a training step: forward, cross-entropy, backward, SGD
step; inference: eval-mode forward without autograd), and the peak memory of a training step
above what was allocated before it (CUDA: the allocator's peak; CPU: the profiler's allocation
events). Ratios ours / peer are printed and written beside each row.

Examples::

    python tools/benchmark_models.py                          # all parts, the sizes above, 2 threads
    python tools/benchmark_models.py --parts heads --maps 2x2048x64x64
    python tools/benchmark_models.py --parts pct --pct-batch 32
    python tools/benchmark_models.py --quick                  # tiny sizes, one repeat (the tests)
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from attn_ops import feature_ops  # noqa: E402
from attn_ops import point_ops as po  # noqa: E402
from projects import progress  # noqa: E402
from tools.benchmark_ops import CLOCKS, count_flops, interleaved_ms, sync  # noqa: E402
MMSEG_PEERS = {  # head -> mmseg's published base config
    'FCNHead': 'fcn_r50-d8.py', 'NLHead': 'nonlocal_r50-d8.py', 'DAHead': 'danet_r50-d8.py',
    'CCHead': 'ccnet_r50-d8.py', 'EMAHead': 'emanet_r50-d8.py', 'ISAHead': 'isanet_r50-d8.py',
}


# ----------------------------------------------------------------------------- measures
def peak_mib(fn: Callable[[], object], device: torch.device) -> Optional[float]:
    """Peak memory allocated while ``fn`` runs, above what was allocated before, in MiB.

    CUDA: the caching allocator's peak. CPU: the running sum of the profiler's allocation and
    free events in time order (every tensor PyTorch allocates, temporaries inside ops included).
    """
    if device.type == 'cuda':
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = getattr(getattr(prof.profiler, 'kineto_results', None), 'events', None)
    if events is None:
        return None
    memory = sorted(((e.start_ns(), e.nbytes()) for e in events() if e.name() == '[memory]'),
                    key=lambda ev: ev[0])
    live = peak = 0
    for _, nbytes in memory:
        live += nbytes
        peak = max(peak, live)
    return peak / 2 ** 20


def gflops(fn: Callable[[], object]) -> float:
    """Forward FLOPs of ``fn`` (matmuls, convolutions, attention) in GFLOP."""
    return count_flops(fn) / 1e9


class ModelCase:
    """One model to measure: its row, a training step (forward, loss, backward, plain SGD step;
    no optimizer state) and an inference call (eval mode, no autograd)."""

    def __init__(self, row: dict, model: nn.Module, forward: Callable[[], object],
                 loss: Callable[[object], Tensor]):
        self.row, self.model, self.forward, self.loss = row, model, forward, loss
        self.optim = torch.optim.SGD(model.parameters(), lr=1e-4)

    def train_step(self) -> None:
        self.model.train()
        value = self.loss(self.forward())
        self.optim.zero_grad(set_to_none=True)
        value.backward()
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)

    def infer(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.forward()


def measure_models(cases: list[ModelCase], opts, device: torch.device, tag: str) -> None:
    """Fill each case's row: params, GFLOPs, train/inference medians (interleaved), peak memory.

    A case whose first training step or inference fails gets ``note`` (the error) instead.
    """
    for i, case in enumerate(progress.track(cases, desc=f'benchmark {tag}', quiet=opts.quiet), 1):
        try:
            case.train_step()
            case.infer()
            case.model.eval()
            case.row.update(params=sum(p.numel() for p in case.model.parameters()), gflops=gflops(case.forward))
        except Exception as err:  # noqa: BLE001 - a model that cannot run here is reported, not fatal
            case.row['note'] = f'{type(err).__name__}: {str(err).splitlines()[0][:160]}'
        progress.write(f'  {tag} [{i}/{len(cases)}] {_line(case.row)}')
    ok = [c for c in cases if 'note' not in c.row]
    print(f'  {tag} timing {len(ok)} models, {opts.repeats} interleaved rounds', flush=True)
    for key, steps in (('train_ms', [c.train_step for c in ok]), ('infer_ms', [c.infer for c in ok])):
        for case, ms in zip(ok, interleaved_ms(steps, opts.repeats, opts.warmup, device, opts.clock)):
            case.row[key] = ms
    for case in ok:
        case.row['peak_mib'] = peak_mib(case.train_step, device)
        print(f'  {tag} {_line(case.row)}', flush=True)


_RATIO_NAMES = dict(train_ms='train', infer_ms='infer', time_ms='time', peak_mib='mem')


def _ratios(row: dict, peer: dict, name: str, keys=('train_ms', 'infer_ms', 'peak_mib')) -> dict:
    """``{'<quantity>_vs_<name>': row / peer}`` for the quantities both rows have."""
    return {f'{_RATIO_NAMES[k]}_vs_{name}': row[k] / peer[k] for k in keys
            if row.get(k) is not None and peer.get(k)}


# ----------------------------------------------------------------------------- (a) heads
def _decode_head_cfg(path: Path) -> dict:
    from mmengine.config import Config
    if not path.is_file():
        raise FileNotFoundError(f'head config not found: {path}')
    return Config.fromfile(str(path)).model.decode_head.to_dict()


def _mmseg_config_dir() -> Path:
    import mmseg
    path = Path(mmseg.__file__).parent / '.mim' / 'configs' / '_base_' / 'models'
    if not path.is_dir():
        raise FileNotFoundError(f"mmseg's configs are not installed at {path} (pip install mmsegmentation "
                                f'ships them); the mmseg peers need their published settings')
    return path


def head_configs() -> list[tuple[str, dict, bool]]:
    """``(label, decode_head config, is_ours)``: EAHead, AttnHead per registered op that returns
    features (not the ``pool`` kind), mmseg's heads.

    AttnHead takes the decode head of the ``configs/attn_head/`` config of the op when there is
    one (its residual and op settings), else the base config with ``attn=dict(type=op)``.
    """
    base = ROOT / 'configs' / '_base_' / 'models'
    heads = [('EAHead', _decode_head_cfg(base / 'eanet_r50-d8.py'), True)]
    attn_base = _decode_head_cfg(base / 'attn_head_r50-d8.py')
    per_op = {}
    for path in sorted((ROOT / 'configs' / 'attn_head').glob('*.py')):
        cfg = _decode_head_cfg(path)
        per_op.setdefault(cfg['attn']['type'], cfg)
    for name in feature_ops():
        cfg = per_op.get(name, dict(attn_base, attn=dict(type=name)))
        heads.append((f'AttnHead({name})', cfg, True))
    peers = _mmseg_config_dir()
    for name, fname in MMSEG_PEERS.items():
        heads.append((name, _decode_head_cfg(peers / fname), False))
    return heads


def _head_cfg(cfg: dict, in_channels: int, channels: Optional[int] = None) -> dict:
    """The published head on one map of ``in_channels``: BN, 19 classes, ``channels`` if given."""
    cfg = dict(cfg, in_channels=in_channels, in_index=0, num_classes=19,
               norm_cfg=dict(type='BN', requires_grad=True))
    if channels is not None:
        cfg['channels'] = channels
    return cfg


def run_heads(opts, device: torch.device) -> list[dict]:
    import projects.segmentation  # noqa: F401  (installs the mmcv.ops stand-ins, registers our heads)
    from mmseg.registry import MODELS
    heads = [h for h in head_configs() if not opts.heads or h[0] in opts.heads]
    rows = []
    for b, c, h, w in opts.maps:
        x = torch.randn(b, c, h, w, device=device)
        target = torch.randint(0, 19, (b, h, w), device=device)

        def loss(out):
            outs = out if isinstance(out, (tuple, list)) else (out,)   # DAHead: three outputs
            return sum(F.cross_entropy(o, target) for o in outs)

        print(f'[heads] feature map {b}x{c}x{h}x{w}: {len(heads)} heads', flush=True)
        cases = []
        for label, cfg, ours in heads:
            row = dict(head=label, source='ours' if ours else 'mmseg', map=f'{b}x{c}x{h}x{w}')
            try:
                torch.manual_seed(0)
                head = MODELS.build(_head_cfg(cfg, c, opts.head_channels)).to(device)
                cases.append(ModelCase(row, head, lambda head=head: head([x]), loss))
            except Exception as err:  # noqa: BLE001 - reported in the table
                row['note'] = f'{type(err).__name__}: {str(err).splitlines()[0][:160]}'
                print(f'  [heads] {_line(row)}', flush=True)
            rows.append(row)
        measure_models(cases, opts, device, '[heads]')
        del cases
    _head_ratios(rows)
    return rows


def head_peer_matrix(rows: list[dict]) -> str:
    """Markdown: per map, each of our heads against each mmseg head, ``train time / peak memory``."""
    text = []
    for size in dict.fromkeys(r['map'] for r in rows):
        ran = [r for r in rows if r['map'] == size and 'train_ms' in r]
        ours = [r for r in ran if r['source'] == 'ours']
        peers = [r for r in ran if r['source'] != 'ours']
        if not ours or not peers:
            continue
        text.append(f'Ours / mmseg on {size}: training-step time / peak memory\n')
        text.append('| head | ' + ' | '.join(p['head'] for p in peers) + ' |')
        text.append('|---|' + '---|' * len(peers))
        for r in ours:
            cells = [f"{r['train_ms'] / p['train_ms']:.2f} / "
                     + (f"{r['peak_mib'] / p['peak_mib']:.2f}" if r.get('peak_mib') and p.get('peak_mib') else '-')
                     for p in peers]
            text.append(f"| {r['head']} | " + ' | '.join(cells) + ' |')
        text.append('')
    return '\n'.join(text)


def _head_ratios(rows: list[dict]) -> None:
    """Every row against FCNHead (the attention-free baseline) of the same map."""
    for row in rows:
        fcn = next((r for r in rows if r['head'] == 'FCNHead' and r['map'] == row['map']
                    and 'train_ms' in r), None)
        if fcn is not None and 'train_ms' in row and row is not fcn:
            row.update(_ratios(row, fcn, 'fcn'))


# ----------------------------------------------------------------------------- (b) PCT
def _knn_full(query: Tensor, ref: Tensor, k: int) -> Tensor:
    """PCT_Pytorch's kNN (``knn_point``): the whole (B, M, N) matrix |q|^2 + |r|^2 - 2 q.r, unsorted top-k."""
    d = -2 * query @ ref.transpose(1, 2)
    d += query.pow(2).sum(-1, keepdim=True)
    d += ref.pow(2).sum(-1).unsqueeze(1)
    return d.topk(k, dim=-1, largest=False, sorted=False).indices


class _PCTPytorchSA(nn.Module):
    """PCT_Pytorch ``SA_Layer``: tied q/k projection to C/4, softmax over keys then L1 over
    queries, offset ``x - x_r`` through conv + BN + ReLU, residual. (B, C, N) -> (B, C, N)."""

    def __init__(self, channels: int):
        super().__init__()
        self.q_conv = nn.Conv1d(channels, channels // 4, 1, bias=False)
        self.k_conv = nn.Conv1d(channels, channels // 4, 1, bias=False)
        self.q_conv.weight = self.k_conv.weight                     # one parameter, two names
        self.v_conv = nn.Conv1d(channels, channels, 1)
        self.trans_conv = nn.Conv1d(channels, channels, 1)
        self.after_norm = nn.BatchNorm1d(channels)

    def forward(self, x: Tensor) -> Tensor:
        energy = self.q_conv(x).transpose(1, 2) @ self.k_conv(x)    # (B, N, N)
        attn = energy.softmax(-1)
        attn = attn / (1e-9 + attn.sum(1, keepdim=True))
        offset = x - self.v_conv(x) @ attn
        return x + F.relu(self.after_norm(self.trans_conv(offset)))


class _PCTPytorchLocal(nn.Module):
    """PCT_Pytorch ``Local_op``: two conv + BN + ReLU over each group, max over its K points.
    (B, S, K, D) -> (B, C, S)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.bn2 = nn.BatchNorm1d(out_channels)

    def forward(self, groups: Tensor) -> Tensor:
        b, s, k, d = groups.shape
        y = groups.permute(0, 1, 3, 2).reshape(b * s, d, k)
        y = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(y))))))
        return y.amax(-1).view(b, s, -1).transpose(1, 2)


class _PCTPytorchLast(nn.Module):
    """PCT_Pytorch ``Point_Transformer_Last``: two conv + BN + ReLU, four SA layers, concatenated."""

    def __init__(self, channels: int = 256):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 1, bias=False)
        self.conv2 = nn.Conv1d(channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.bn2 = nn.BatchNorm1d(channels)
        self.sa1, self.sa2, self.sa3, self.sa4 = (_PCTPytorchSA(channels) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        outs = []
        for sa in (self.sa1, self.sa2, self.sa3, self.sa4):
            x = sa(x)
            outs.append(x)
        return torch.cat(outs, 1)


def _sample_and_group(num_samples: int, k: int, xyz: Tensor, feat: Tensor):
    """PCT_Pytorch ``sample_and_group`` with our FPS: centres, their kNN groups [f_j - f_c, f_c]."""
    idx = po.farthest_point_sample(xyz, num_samples)
    new_xyz, centre = po.gather_points(xyz, idx), po.gather_points(feat, idx)
    grouped = po.gather_points(feat, _knn_full(new_xyz, xyz, k)) - centre.unsqueeze(2)
    return new_xyz, torch.cat([grouped, centre.unsqueeze(2).expand_as(grouped)], -1)


class PCTPytorch(nn.Module):
    """PCT_Pytorch's ``Pct`` (``model.py``) rebuilt from its published layer list, as the peer:
    channels-first ``(B, 3, N)`` Conv1d layers, the full-matrix kNN, our farthest point sampling
    in place of the CUDA ``pointnet2_ops`` one. Its state dict has PCT_Pytorch's keys and shapes
    (2,876,136 parameters for 40 classes) and converts to ``PCT`` with
    ``tools/model_converters/pct_pytorch.py``. ``samples`` and ``k`` (the published 512, 256 and
    32) only change the sizes of the sampling, not the layers.
    """

    def __init__(self, num_classes: int = 40, dropout: float = 0.5, samples: tuple[int, int] = (512, 256),
                 k: int = 32):
        super().__init__()
        self.samples, self.k = samples, k
        self.conv1 = nn.Conv1d(3, 64, 1, bias=False)
        self.conv2 = nn.Conv1d(64, 64, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(64)
        self.bn2 = nn.BatchNorm1d(64)
        self.gather_local_0 = _PCTPytorchLocal(128, 128)
        self.gather_local_1 = _PCTPytorchLocal(256, 256)
        self.pt_last = _PCTPytorchLast(256)
        self.conv_fuse = nn.Sequential(nn.Conv1d(1280, 1024, 1, bias=False), nn.BatchNorm1d(1024),
                                       nn.LeakyReLU(0.2))
        self.linear1 = nn.Linear(1024, 512, bias=False)
        self.bn6 = nn.BatchNorm1d(512)
        self.dp1 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(512, 256)
        self.bn7 = nn.BatchNorm1d(256)
        self.dp2 = nn.Dropout(dropout)
        self.linear3 = nn.Linear(256, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, N)`` -> logits ``(B, num_classes)``."""
        xyz = x.transpose(1, 2)
        f = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        xyz, groups = _sample_and_group(self.samples[0], self.k, xyz, f.transpose(1, 2))
        f0 = self.gather_local_0(groups)
        xyz, groups = _sample_and_group(self.samples[1], self.k, xyz, f0.transpose(1, 2))
        f1 = self.gather_local_1(groups)
        y = self.conv_fuse(torch.cat([self.pt_last(f1), f1], 1)).amax(-1)
        y = self.dp1(F.leaky_relu(self.bn6(self.linear1(y)), 0.2))
        y = self.dp2(F.leaky_relu(self.bn7(self.linear2(y)), 0.2))
        return self.linear3(y)


def run_pct(opts, device: torch.device) -> list[dict]:
    from projects.pointcloud.models.base import smooth_cross_entropy
    from projects.pointcloud.models.pct import PCT, NaivePCT, SimplePCT
    b, n = opts.pct_batch, opts.pct_points
    torch.manual_seed(0)
    pos = torch.rand(b, n, 3, device=device) * 2 - 1
    target = torch.randint(0, 40, (b,), device=device)

    def loss(logits):  # PCT_Pytorch's cal_loss: label smoothing 0.2
        return smooth_cross_entropy(logits, target, 0.2)

    (s0, s1), k = opts.pct_samples, opts.pct_k
    stages = ((s0, k, 128), (s1, k, 256))
    builders = [('PCT_Pytorch Pct (rebuilt)', 'peer', lambda: PCTPytorch(40, samples=(s0, s1), k=k),
                 lambda m: m(pos.transpose(1, 2))),
                ('PCT', 'ours', lambda: PCT(40, neighbor_stages=stages), lambda m: m.logits(pos)),
                ('SimplePCT', 'ours', lambda: SimplePCT(40), lambda m: m.logits(pos)),
                ('NaivePCT', 'ours', lambda: NaivePCT(40), lambda m: m.logits(pos))]
    print(f'[pct] {b} clouds of {n} points, 40 classes, FPS {s0} -> {s1}, k={k}', flush=True)
    cases = []
    for label, source, build, call in builders:
        torch.manual_seed(0)
        model = build().to(device)
        cases.append(ModelCase(dict(model=label, source=source, input=f'{b}x{n}x3'), model,
                               lambda model=model, call=call: call(model), loss))
    measure_models(cases, opts, device, '[pct]')
    rows = [c.row for c in cases]
    for row in rows[1:]:
        if 'note' not in rows[0] and 'note' not in row:
            row.update(_ratios(row, rows[0], 'peer'))
    return rows


# ----------------------------------------------------------------------------- (c) point ops
def fps_previous(pos: Tensor, num_samples: int) -> Tensor:
    """The farthest point sampling loop this library used before (one allocation per op and step)."""
    b, n, _ = pos.shape
    idx = pos.new_zeros(b, num_samples, dtype=torch.long)
    min_dist = pos.new_full((b, n), float('inf'))
    arange = torch.arange(b, device=pos.device)
    last = torch.zeros(b, dtype=torch.long, device=pos.device)
    for t in range(1, num_samples):
        d = (pos - pos[arange, last].unsqueeze(1)).pow(2).sum(-1)
        min_dist = torch.minimum(min_dist, d)
        last = min_dist.argmax(dim=1)
        idx[:, t] = last
    return idx


def _ball_full(query: Tensor, ref: Tensor, radius: float, k: int) -> Tensor:
    """PointNet++'s ``query_ball_point`` (as PCT_Pytorch ships it): the whole (B, M, N) matrix,
    a full sort of each row."""
    b, m, _ = query.shape
    n = ref.shape[1]
    d = -2 * query @ ref.transpose(1, 2)
    d += query.pow(2).sum(-1, keepdim=True)
    d += ref.pow(2).sum(-1).unsqueeze(1)
    idx = torch.arange(n, device=ref.device).expand(b, m, n).clone()
    idx[d > radius ** 2] = n
    idx = idx.sort(dim=-1).values[..., :k]
    first = idx[..., :1].expand_as(idx)
    return torch.where(idx == n, first, idx)


def point_op_cases(opts, device: torch.device) -> list[tuple[str, dict, list[tuple[str, str, Callable]]]]:
    """``(op, sizes, [(implementation, 'ours'|'peer', fn)])``; the first peer is the ratio's."""
    cases = []
    for b, n, s in opts.fps_sizes:
        pos = torch.rand(b, n, 3, device=device)
        impls = [('previous loop', 'peer', lambda pos=pos, s=s: fps_previous(pos, s)),
                 (f'ours ({po.fps_backend(pos)})', 'ours', lambda pos=pos, s=s: po.farthest_point_sample(pos, s)),
                 ('ours (torch loop)', 'ours',
                  lambda pos=pos, s=s: po.farthest_point_sample(pos, s, backend='torch'))]
        if po.torch_cluster is not None:
            batch = torch.arange(b, device=pos.device).repeat_interleave(n)
            impls.append(('torch_cluster.fps', 'peer', lambda pos=pos, batch=batch, r=s / n:
                          po.torch_cluster.fps(pos.view(-1, 3), batch, r, random_start=False)))
        cases.append(('farthest_point_sample', dict(B=b, N=n, S=s), impls))
    for b, m, n, k in opts.knn_sizes:
        q, r = torch.rand(b, m, 3, device=device), torch.rand(b, n, 3, device=device)
        cases.append(('knn', dict(B=b, M=m, N=n, k=k), [
            ('full matrix (PCT_Pytorch)', 'peer', lambda q=q, r=r, k=k: _knn_full(q, r, k)),
            ('ours (chunked, exact)', 'ours', lambda q=q, r=r, k=k: po.knn(q, r, k))]))
        cases.append(('ball_query', dict(B=b, M=m, N=n, k=k), [
            ('full matrix + sort (PointNet++)', 'peer', lambda q=q, r=r, k=k: _ball_full(q, r, opts.radius, k)),
            ('ours (chunked, exact)', 'ours', lambda q=q, r=r, k=k: po.ball_query(q, r, opts.radius, k))]))
    return cases


def run_point_ops(opts, device: torch.device) -> list[dict]:
    rows = []
    cases = point_op_cases(opts, device)
    print(f'[point_ops] {len(cases)} cases', flush=True)
    for i, (op, sizes, impls) in enumerate(progress.track(cases, desc='benchmark point ops', quiet=opts.quiet), 1):
        size = ' '.join(f'{k}={v}' for k, v in sizes.items())
        with torch.no_grad():
            times = interleaved_ms([fn for _, _, fn in impls], opts.repeats, opts.warmup, device, opts.clock)
            case_rows = [dict(op=op, impl=label, source=source, size=size, time_ms=ms, peak_mib=peak_mib(fn, device))
                         for (label, source, fn), ms in zip(impls, times)]
        peer = next(r for r in case_rows if r['source'] == 'peer')
        for row in case_rows:
            if row is not peer:
                row.update(_ratios(row, peer, 'peer', ('time_ms', 'peak_mib')))
            progress.write(f'  [{i}/{len(cases)}] {_line(row)}')
        rows += case_rows
    return rows


# ----------------------------------------------------------------------------- output
def _line(row: dict) -> str:
    name = row.get('head') or row.get('model') or f"{row['op']} {row['size']}: {row['impl']}"
    if 'note' in row:
        return f'{name}: not run ({row["note"]})'
    parts = [f'{k}={_fmt(row[k])}' for k in ('params', 'gflops', 'train_ms', 'infer_ms', 'time_ms', 'peak_mib')
             if row.get(k) is not None]
    ratios = [f'{k}={_fmt(v)}' for k, v in row.items() if k.endswith(('_vs_fcn', '_vs_peer'))]
    return f'{name}: ' + ' '.join(parts) + (f'  ({", ".join(ratios)})' if ratios else '')


def _fmt(v) -> str:
    if isinstance(v, float):
        return f'{v:.3g}' if abs(v) < 1000 else f'{v:.0f}'
    return '' if v is None else str(v)


def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return [c for c in cols if c != 'note'] + (['note'] if 'note' in cols else [])


def write_table(rows: list[dict], out: Path, name: str, header: str) -> None:
    """``<name>.csv`` and ``<name>.md`` (markdown table under ``header``)."""
    cols = _columns(rows)
    with open(out / f'{name}.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    table = '| ' + ' | '.join(cols) + ' |\n|' + '---|' * len(cols) + '\n'
    table += ''.join('| ' + ' | '.join(_fmt(r.get(c)) for c in cols) + ' |\n' for r in rows)
    (out / f'{name}.md').write_text(header + '\n\n' + table)


def plot(rows: list[dict], out: Path, name: str, label_key: str, group_key: str,
         metrics: tuple[tuple[str, str], ...]) -> None:
    """Horizontal bars: one block per row label, one bar (colour) per group it has; peers hatched;
    one panel per metric, log scale."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    rows = [r for r in rows if 'note' not in r]
    if not rows:
        return
    labels = list(dict.fromkeys(r[label_key] for r in rows))
    groups = list(dict.fromkeys(r[group_key] for r in rows))
    colours = {g: f'C{i % 10}' for i, g in enumerate(groups)}
    blocks = {lab: [r for r in rows if r[label_key] == lab] for lab in labels}
    bars = sum(len(b) for b in blocks.values())
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 0.3 * bars + 0.3 * len(labels) + 1.5),
                             dpi=110, squeeze=False)
    for ax, (key, title) in zip(axes[0], metrics):
        y, ticks = 0.0, []
        for lab, block in blocks.items():
            ticks.append(y + (len(block) - 1) / 2)
            for r in block:
                if r.get(key) is not None:
                    ax.barh(y, r[key], height=0.85, color=colours[r[group_key]],
                            hatch='//' if r['source'] != 'ours' else '', edgecolor='black', linewidth=0.3)
                y += 1
            y += 0.6
        ax.set_yticks(ticks)
        ax.set_yticklabels(labels if ax is axes[0][0] else [''] * len(labels), fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale('log')
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis='x', which='both', alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in groups]
    axes[0][0].legend(handles, groups, fontsize=7, title=f'{group_key} (hatched: peer)', title_fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f'{name}.png')
    plt.close(fig)


def write(results: dict, out: Path, opts) -> None:
    out.mkdir(parents=True, exist_ok=True)
    head = (f'device={opts.device}, {torch.get_num_threads()} threads, {opts.clock} clock, torch {torch.__version__}, '
            f'median of {opts.repeats} after {opts.warmup} warm-up')
    sections = []
    if 'heads' in results:
        write_table(results['heads'], out, 'heads', f'Decode heads ({head}); *_vs_fcn: ratio to FCNHead')
        matrix = head_peer_matrix(results['heads'])
        print(matrix)
        with open(out / 'heads.md', 'a') as f:
            f.write('\n' + matrix)
        plot(results['heads'], out, 'heads', 'head', 'map',
             (('train_ms', 'training step (ms)'), ('infer_ms', 'inference (ms)'), ('peak_mib', 'peak memory, train (MiB)')))
        sections.append('heads')
    if 'pct' in results:
        write_table(results['pct'], out, 'pct', f'Point-cloud networks ({head}); *_vs_peer: ratio to PCT_Pytorch')
        plot(results['pct'], out, 'pct', 'model', 'input',
             (('train_ms', 'training step (ms)'), ('infer_ms', 'inference (ms)'), ('peak_mib', 'peak memory, train (MiB)')))
        sections.append('pct')
    if 'point_ops' in results:
        rows = results['point_ops']
        write_table(rows, out, 'point_ops', f'Point ops ({head}); *_vs_peer: ratio to the first peer of the case')
        for r in rows:
            r['case'] = f"{r['op']} {r['size']}"
        plot(rows, out, 'point_ops', 'case', 'impl', (('time_ms', 'time (ms)'), ('peak_mib', 'peak memory (MiB)')))
        sections.append('point_ops')
    (out / 'results.md').write_text('\n\n'.join((out / f'{s}.md').read_text() for s in sections))
    print(f'wrote {", ".join(str(out / f"{s}.{ext}") for s in sections for ext in ("csv", "md", "png"))}')


# ----------------------------------------------------------------------------- driver
def _sizes(n: int):
    def parse(text: str) -> tuple[int, ...]:
        values = tuple(int(v) for v in text.lower().split('x'))
        if len(values) != n:
            raise argparse.ArgumentTypeError(f'expected {n} sizes joined by x, got {text!r}')
        return values
    return parse


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--parts', nargs='+', choices=('heads', 'pct', 'point_ops'), default=['heads', 'pct', 'point_ops'])
    p.add_argument('--maps', nargs='+', type=_sizes(4), default=[(2, 2048, 64, 64), (2, 2048, 32, 32)],
                   help='head inputs BxCxHxW')
    p.add_argument('--heads', nargs='+', help='only these rows, e.g. EAHead "AttnHead(ExternalAttention)" FCNHead')
    p.add_argument('--head-channels', type=int, help="override every head's width (default: its config's)")
    p.add_argument('--pct-batch', type=int, default=16)
    p.add_argument('--pct-points', type=int, default=1024)
    p.add_argument('--pct-samples', nargs=2, type=int, default=(512, 256),
                   help='FPS centres of the two neighbour-embedding stages (PCT: 512 256)')
    p.add_argument('--pct-k', type=int, default=32, help='neighbours per centre (PCT: 32)')
    p.add_argument('--fps-sizes', nargs='+', type=_sizes(3), default=[(32, 1024, 512), (8, 4096, 1024), (2, 16384, 4096)],
                   help='farthest point sampling BxNxS')
    p.add_argument('--knn-sizes', nargs='+', type=_sizes(4), default=[(32, 512, 1024, 32), (2, 4096, 8192, 16)],
                   help='kNN and ball query BxMxNxk (M queries, N reference points)')
    p.add_argument('--radius', type=float, default=0.1, help='ball query radius (points uniform in the unit cube)')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=2, help='torch.set_num_threads (CPU)')
    p.add_argument('--clock', choices=sorted(CLOCKS), default='wall',
                   help="wall: elapsed time; cpu: this process's CPU time (CPU only; with --threads 1 on a shared machine)")
    p.add_argument('--device', default='cpu')
    p.add_argument('--quick', action='store_true', help='tiny sizes, one repeat: checks that everything runs')
    p.add_argument('--out', default='work_dirs/benchmark_models')
    progress.add_quiet_argument(p)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.maps, opts.head_channels = [(1, 32, 8, 8)], 32
        opts.pct_batch, opts.pct_points, opts.pct_samples, opts.pct_k = 2, 64, (32, 16), 8
        opts.fps_sizes, opts.knn_sizes = [(2, 64, 16)], [(2, 16, 64, 4)]
        opts.repeats, opts.warmup, opts.radius = 1, 0, 0.3
    return opts


def main(argv=None) -> dict:
    opts = parse_args(argv)
    torch.set_num_threads(opts.threads)
    device = torch.device(opts.device)
    runners = dict(heads=run_heads, pct=run_pct, point_ops=run_point_ops)
    results = {part: runners[part](opts, device) for part in opts.parts}
    write(results, Path(opts.out), opts)
    return results


if __name__ == '__main__':
    main()
