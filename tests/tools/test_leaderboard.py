"""The leaderboard tool: which ops go where, the context task's receptive-field claim, a quick run
whose table does not depend on --jobs, the Pareto front, and the README block it generates.
The full board is not rerun here (tools/leaderboard.py --jobs 2 --write-readme)."""
import csv
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from attn_ops import ATTENTION
from tools import leaderboard

ROOT = Path(__file__).resolve().parents[2]


def test_op_selection_follows_kind_and_layout():
    seg, pc = leaderboard.seg_ops(), leaderboard.pc_ops()
    pools = {n for n in ATTENTION.module_dict if ATTENTION.get(n).kind == 'pool'}
    assert seg[0] == 'FCNHead' and set(seg[1:]) == set(ATTENTION.module_dict) - pools
    assert set(pc) == {n for n in ATTENTION.module_dict if ATTENTION.get(n).layout == 'tokens'} - pools
    assert 'ExternalAttention' in pc and 'PositionAttention' not in pc   # a map op stays out of PCT


def test_baseline_cannot_see_the_cue():
    """Every input pixel that moves the FCNHead network's logit at a pixel lies closer than the
    dataset's gap: without an op, a shape's class is out of reach."""
    cfg = dict(Config.fromfile(leaderboard.CONFIG)['seg'])
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('pointcloud'):   # a scope another tool left current
        net = leaderboard.build_seg_net('FCNHead', cfg).eval()
    reach = 0
    for y, x in ((32, 32), (45, 45), (20, 37), (33, 30)):
        img = torch.randn(1, 3, cfg['size'], cfg['size'], requires_grad=True)
        net(img)[0, :, y, x].sum().backward()
        ys, xs = torch.nonzero(img.grad.abs().sum((0, 1)) > 0, as_tuple=True)
        reach = max(reach, int(torch.maximum((ys - y).abs(), (xs - x).abs()).max()))
    assert 16 < reach < cfg['gap'], f'receptive field reaches {reach} px, gap {cfg["gap"]}'


def _table(path):
    with open(path / 'results.csv', newline='') as f:
        return list(csv.DictReader(f))


def test_quick_run_writes_the_board_and_is_the_same_for_any_jobs(tmp_path):
    torch.set_num_threads(2)
    rows = leaderboard.main(['--quick', '--out', str(tmp_path / 'one')])
    assert torch.get_num_threads() == 2     # the in-process run (one thread) leaves the caller's setting
    assert [(r['task'], r['op']) for r in rows] == [('seg', 'FCNHead'), ('seg', 'ExternalAttention'),
                                                    ('pc', 'ExternalAttention')]
    assert not any(r['error'] for r in rows), [r['error'] for r in rows]
    for r in rows:
        assert 0 <= r['score'] <= 100 and r['params'] > 0 and r['mflops'] > 0 and r['act_mib'] > 0
    seg = {r['op']: r for r in rows if r['task'] == 'seg'}
    # the op adds its parameters (two bias-free 32 x 64 memories) and FLOPs on top of the same head
    assert seg['ExternalAttention']['params'] - seg['FCNHead']['params'] == 2 * 32 * 64 + 1
    assert seg['ExternalAttention']['mflops'] > seg['FCNHead']['mflops']
    for name in ('results.md', 'pareto_seg.png', 'pareto_pc.png'):
        assert (tmp_path / 'one' / name).stat().st_size > 100
    table = _table(tmp_path / 'one')
    two = leaderboard.main(['--quick', '--tasks', 'seg', '--jobs', '2', '--out', str(tmp_path / 'two')])
    assert [r['score'] for r in two] == [r['score'] for r in rows[:2]]    # seeds per op, not per process
    block = leaderboard.markdown(table)
    assert set(re.findall(r'^\| \d+ \| \**(\w+)\**', block, flags=re.M)) == {'FCNHead', 'ExternalAttention'}


def test_pareto_front():
    rows = [dict(op=o, mflops=str(c), score=str(s)) for o, c, s in
            [('a', 1, 0.5), ('b', 2, 0.4), ('c', 3, 0.9), ('d', 3, 0.7), ('e', 5, 0.9)]]
    assert [r['op'] for r in leaderboard.pareto(rows)] == ['a', 'c']


def test_unknown_op_names_close_matches(capsys):
    with pytest.raises(SystemExit):
        leaderboard.parse_args(['--ops', 'ExternalAtention'])
    assert 'unknown op(s): ExternalAtention (close: ExternalAttention' in capsys.readouterr().err


def test_readme_block_is_the_committed_csv():
    """The README's leaderboard is what --write-readme renders from tools/assets/leaderboard/results.csv."""
    rows = _table(leaderboard.ASSETS)
    block = leaderboard.readme_block((ROOT / 'README.md').read_text())
    assert block == leaderboard.markdown(rows)
    seg, pc = (block.split('**Point clouds') + [''])[:2]
    for task, part in (('seg', seg), ('pc', pc)):
        listed = set(re.findall(r'^\| (?:\d+|-) \| \**(\w+)\**', part, flags=re.M))
        assert listed == {r['op'] for r in rows if r['task'] == task}
    assert 'FCNHead' in {r['op'] for r in rows}


def test_context_gap_sentence():
    rows = [dict(op=o, score=str(s)) for o, s in
            [('FCNHead', 40), ('ExternalAttention', 60), ('PositionAttention', 80.25), ('SEAttention', 50)]]
    assert leaderboard.context_gap(rows) == ('Without an op (FCNHead) 40.0 mIoU; with global context: '
                                             'ExternalAttention 60.0 (+20.0); best op PositionAttention '
                                             '80.2 (+40.2).\n\n')
    assert leaderboard.context_gap(rows[1:]) == ''


def test_a_subset_run_replaces_its_rows_and_keeps_the_others():
    board = [dict(task='seg', op='FCNHead', score='35'), dict(task='seg', op='ACmix', score='36'),
             dict(task='pc', op='ACmix', score='90'), dict(task='seg', op='SimAM', score='40')]
    fresh = [dict(task='seg', op='ACmix', score='37'), dict(task='seg', op='NewOp', score='50')]
    assert leaderboard.merge_rows(board, fresh) == [
        board[0], fresh[0], board[2], board[3], fresh[1]]   # order kept, new ops last


def test_write_readme_merges_a_subset_run_into_the_stored_board(tmp_path, monkeypatch):
    import shutil
    assets, run = tmp_path / 'assets', tmp_path / 'run'
    shutil.copytree(leaderboard.ASSETS, assets)
    monkeypatch.setattr(leaderboard, 'ASSETS', assets)
    board = _table(assets)
    changed = dict(next(r for r in board if r['task'] == 'seg' and r['op'] == 'ACmix'), score='12.3')
    run.mkdir()
    with open(run / 'results.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(changed))
        writer.writeheader()
        writer.writerow(changed)
    readme = tmp_path / 'README.md'
    readme.write_text(f'before\n{leaderboard.BEGIN}\nold\n{leaderboard.END}\nafter\n')
    leaderboard.write_readme(run, readme, merge=True)
    merged = _table(assets)
    assert [(r['task'], r['op']) for r in merged] == [(r['task'], r['op']) for r in board]
    assert next(r for r in merged if r['op'] == 'ACmix' and r['task'] == 'seg')['score'] == '12.3'
    assert sum(a != b for a, b in zip(merged, board)) == 1
    text = readme.read_text()
    assert text.startswith('before\n') and text.endswith('after\n')
    assert leaderboard.readme_block(text) == leaderboard.markdown(merged)
