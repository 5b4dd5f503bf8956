"""The benchmark tool measures what it says: FLOPs against the closed form, activation memory
that shows the SDPA fast path keeps no N x N matrix, tables and plots written. No timing asserts."""
import csv

import pytest
import torch

from tools import benchmark_ops


def _run(tmp_path, *extra):
    return benchmark_ops.main(['--tokens', '64', '256', '--dim', '16', '--repeats', '1', '--warmup', '0',
                               '--out', str(tmp_path), *extra])


def test_flops_memory_and_outputs(tmp_path):
    pytest.importorskip('fightingcv_attention')
    rows = _run(tmp_path, '--ops', 'ExternalAttention', 'MultiHeadAttention')
    ea = {r['N']: r for r in rows if r['op'] == 'ExternalAttention'}
    # two bias-free linears: 2*B*N*C*S each, B=2, C=16, S=64
    assert ea[256]['gflops'] * 1e9 == pytest.approx(4 * 2 * 256 * 16 * 64)
    assert ea[256]['peer_gflops'] == pytest.approx(ea[256]['gflops'])
    mha = {r['N']: r for r in rows if r['op'] == 'MultiHeadAttention'}
    # qkv + proj linears (2 B N C 4C) + SDPA's two matmuls (4 B h N N d), the CPU kernel counted too
    assert mha[256]['gflops'] * 1e9 == pytest.approx(2 * 2 * 256 * 16 * 64 + 4 * 2 * 8 * 256 * 256 * 2)
    attn_matrix_mib = 2 * 8 * 256 * 256 * 4 / 2 ** 20      # (B, heads, N, N) float32
    assert mha[256]['peer_act_mib'] > attn_matrix_mib       # the catalogue keeps the N x N weights
    assert mha[256]['act_mib'] < attn_matrix_mib / 4        # SDPA does not
    with open(tmp_path / 'results.csv') as f:
        table = list(csv.DictReader(f))
    assert [r['op'] for r in table] == ['ExternalAttention'] * 2 + ['MultiHeadAttention'] * 2
    assert float(table[0]['time_ratio']) > 0
    assert (tmp_path / 'results.md').read_text().count('\n| ExternalAttention |') == 2
    assert (tmp_path / 'time.png').stat().st_size > 1000 and (tmp_path / 'memory.png').exists()


def test_unknown_op_names_close_matches(capsys):
    with pytest.raises(SystemExit):
        benchmark_ops.parse_args(['--ops', 'ExternalAtention'])
    assert 'unknown op(s): ExternalAtention (close: ExternalAttention' in capsys.readouterr().err


def test_backward_mode_on_every_layout(tmp_path):
    """forward + backward timing, and FLOPs counted on inputs that require grad (map op included)."""
    rows = benchmark_ops.main(['--tokens', '64', '--dim', '16', '--repeats', '1', '--warmup', '0', '--backward',
                               '--no-peer', '--ops', 'OutlookAttention', 'ExternalAttention', '--out', str(tmp_path)])
    assert [r['op'] for r in rows] == ['OutlookAttention', 'ExternalAttention']
    assert all(r['gflops'] > 0 and r['act_mib'] > 0 for r in rows)


def test_cpu_clock_ignores_time_the_process_does_not_run():
    import time
    nap = lambda: time.sleep(0.05)   # noqa: E731  (off the CPU: the wall clock counts it, the CPU clock not)
    wall, = benchmark_ops.interleaved_ms([nap], repeats=1, warmup=0, device=torch.device('cpu'), clock='wall')
    cpu, = benchmark_ops.interleaved_ms([nap], repeats=1, warmup=0, device=torch.device('cpu'), clock='cpu')
    assert wall >= 50 and cpu < 25
    with pytest.raises(ValueError, match="clock='cpu'.*cuda"):
        benchmark_ops.interleaved_ms([nap], repeats=1, warmup=0, device=torch.device('cuda'), clock='cpu')


def test_interleaved_rounds_rotate_the_order_and_keep_each_functions_times():
    import time
    calls = []

    def step(name, seconds):
        def run():
            calls.append(name)
            time.sleep(seconds)
        return run

    fast, slow = benchmark_ops.interleaved_ms([step('a', 0.0), step('b', 0.03)], repeats=4, warmup=0,
                                              device=torch.device('cpu'), clock='wall')
    assert calls == ['a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']     # no function always goes first
    assert fast < 10 and slow >= 30                              # each median is its own function's
