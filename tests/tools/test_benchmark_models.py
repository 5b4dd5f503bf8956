"""benchmark_models runs on tiny sizes and measures what it says: the PCT_Pytorch rebuild has the
published layers (keys, shapes, parameter count) and computes what our PCT computes with converted
weights, the peers' point ops equal ours, peak memory counts a known allocation. No timing asserts."""
import csv
import json
from pathlib import Path

import pytest
import torch

from attn_ops import ATTENTION, point_ops as po
from tools import benchmark_models as bm

KEYS = Path(__file__).resolve().parents[1] / 'pointcloud' / 'pct_pytorch_keys.json'


def test_pct_pytorch_rebuild_has_the_published_layers():
    ref = json.loads(KEYS.read_text())
    model = bm.PCTPytorch(40)
    got = [[f'module.{k}', list(v.shape)] for k, v in model.state_dict().items()]
    assert sorted(got) == sorted(ref['keys'])
    assert sum(p.numel() for p in model.parameters()) == ref['num_parameters'] == 2876136
    assert model.pt_last.sa1.q_conv.weight is model.pt_last.sa1.k_conv.weight


def test_pct_pytorch_rebuild_equals_our_pct_with_converted_weights():
    from projects.pointcloud.models.pct import PCT
    from tools.model_converters.pct_pytorch import convert_pct_pytorch
    torch.manual_seed(0)
    peer = bm.PCTPytorch(40, samples=(64, 32), k=8)
    for m in peer.modules():                       # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ours = PCT(40, neighbor_stages=((64, 8, 128), (32, 8, 256)))
    ours.load_state_dict(convert_pct_pytorch(peer.state_dict()))
    pos = torch.rand(2, 128, 3) * 2 - 1
    peer.eval(), ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours.logits(pos), peer(pos.transpose(1, 2)), rtol=1e-4, atol=1e-4)


def test_peer_point_ops_equal_ours():
    torch.manual_seed(1)
    pos = torch.rand(3, 300, 3)
    assert torch.equal(bm.fps_previous(pos, 100), po.farthest_point_sample(pos, 100))
    q = pos[:, :40]
    full = bm._knn_full(q, pos, 8).sort(-1).values
    assert torch.equal(full, po.knn(q, pos, 8).sort(-1).values)
    assert torch.equal(bm._ball_full(q, pos, 0.2, 16), po.ball_query(q, pos, 0.2, 16))


def test_peak_memory_counts_a_known_allocation():
    def fn():
        x = torch.ones(1 << 20)          # 4 MiB, freed on return
        return float(x.sum())
    peak = bm.peak_mib(fn, torch.device('cpu'))
    assert 4.0 <= peak < 4.5


def test_head_list_covers_every_feature_op_and_the_mmseg_peers():
    labels = [label for label, _, _ in bm.head_configs()]
    assert labels[0] == 'EAHead'
    ops = {n for n in ATTENTION.module_dict if ATTENTION.get(n).kind != 'pool'}
    assert {label[len('AttnHead('):-1] for label in labels if label.startswith('AttnHead(')} == ops
    assert labels[-6:] == ['FCNHead', 'NLHead', 'DAHead', 'CCHead', 'EMAHead', 'ISAHead']


def test_quick_run_writes_tables_plots_and_ratios(tmp_path):
    heads = ['EAHead', 'AttnHead(ExternalAttention)', *bm.MMSEG_PEERS]
    results = bm.main(['--quick', '--heads', *heads, '--out', str(tmp_path)])
    head_rows = results['heads']
    assert [r['head'] for r in head_rows] == heads
    assert all('note' not in r and r['train_ms'] > 0 and r['peak_mib'] > 0 for r in head_rows), \
        [r.get('note') for r in head_rows]                       # every mmseg head runs on mmcv-lite
    assert 'train_vs_fcn' in head_rows[0] and 'train_vs_fcn' not in head_rows[2]
    pct = {r['model']: r for r in results['pct']}
    assert pct['PCT']['params'] == pct['PCT_Pytorch Pct (rebuilt)']['params'] == 2876136
    assert pct['PCT']['train_vs_peer'] > 0 and pct['NaivePCT']['gflops'] > 0
    ops = results['point_ops']
    assert {r['op'] for r in ops} == {'farthest_point_sample', 'knn', 'ball_query'}
    assert all('time_vs_peer' in r for r in ops if r['source'] == 'ours')
    for part in ('heads', 'pct', 'point_ops'):
        with open(tmp_path / f'{part}.csv') as f:
            assert len(list(csv.DictReader(f))) == len(results[part])
        assert (tmp_path / f'{part}.png').stat().st_size > 1000
    summary = (tmp_path / 'results.md').read_text()
    assert summary.count('| EAHead |') == 2 and 'Ours / mmseg on 1x32x8x8' in summary   # table + matrix


def test_bad_sizes_are_named(capsys):
    with pytest.raises(SystemExit):
        bm.parse_args(['--maps', '2x2048x64'])
    assert "expected 4 sizes joined by x, got '2x2048x64'" in capsys.readouterr().err
