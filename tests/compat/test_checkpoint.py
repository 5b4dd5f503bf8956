"""Checkpoints load with weights_only=True plus mmengine's allowlist; crafted pickles are refused."""
import os
import pickle
import re

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

from projects.compat import checkpoint as ckpt


class _WritesMarker:
    """Unpickling this object would create ``path`` (stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


@pytest.fixture(autouse=True)
def _install():
    ckpt.install()


def _mmengine_like_checkpoint():
    hub = MessageHub.get_instance('attn_ops_ckpt_test')
    for i in range(3):
        hub.update_scalar('train/loss', float(np.float64(0.5 / (i + 1))))
    hub.update_info('iter', 2)
    hub.update_info('np_scalar', np.float32(1.5))
    return dict(meta=dict(epoch=0, iter=2, seed=0, message_hub=hub.state_dict(),
                          dataset_meta=dict(classes=('a', 'b'), palette=[[0, 0, 0], [1, 2, 3]])),
                state_dict={'w': torch.ones(2)},
                optimizer={'state': {}, 'param_groups': [{'lr': 0.1, 'params': [0]}]},
                param_schedulers=[{'last_step': 2, 'base_values': [0.1]}])


def test_mmengine_checkpoint_round_trips_with_weights_only(tmp_path):
    path = str(tmp_path / 'iter_2.pth')
    torch.save(_mmengine_like_checkpoint(), path)
    # the stock loader of torch 2.13 refuses it without the allowlist on some globals; ours loads it
    loaded = _load_checkpoint(path, map_location='cpu')
    scalars = loaded['meta']['message_hub']['log_scalars']
    assert isinstance(scalars['train/loss'], HistoryBuffer)
    np.testing.assert_allclose(scalars['train/loss'].data[0], [0.5, 0.25, 0.5 / 3])
    assert loaded['meta']['message_hub']['runtime_info']['np_scalar'] == np.float32(1.5)
    torch.testing.assert_close(loaded['state_dict']['w'], torch.ones(2))


def test_allowlist_covers_mmengine_and_nothing_dangerous(tmp_path):
    path = str(tmp_path / 'c.pth')
    torch.save(_mmengine_like_checkpoint(), path)
    # after install() nothing in an mmengine checkpoint is outside the allowlist
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    names = {g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
             for g in ckpt.safe_globals()}
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names
    dangerous = [n for n in names if n.startswith(('builtins.', 'os.', 'subprocess', 'posix'))]
    assert dangerous == ['builtins.getattr']  # stands for the restricted history_buffer_getattr
    assert dict((g[1], g[0]) for g in ckpt.safe_globals() if isinstance(g, tuple))[
        'builtins.getattr'] is ckpt.history_buffer_getattr


class _GetattrPayload:
    """getattr(np.ndarray, 'tofile'): what an unrestricted getattr would hand to a crafted file."""

    def __reduce__(self):
        return (getattr, (np.ndarray, 'tofile'))


def test_getattr_is_restricted_to_history_buffer_methods(tmp_path):
    from mmengine.logging import HistoryBuffer

    assert ckpt.history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in ((np.ndarray, 'tofile'), (HistoryBuffer, '__init__'), (HistoryBuffer, 'update')):
        with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer statistics methods'):
            ckpt.history_buffer_getattr(obj, name)
    path = str(tmp_path / 'getattr.pth')
    torch.save({'payload': _GetattrPayload()}, path)
    with pytest.raises(ckpt.CheckpointRefusedError, match=r'getattr\.pth.*builtins\.getattr'):
        _load_checkpoint(path, map_location='cpu')


def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / 'marker.txt'
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': _WritesMarker(str(marker))}, path)

    with pytest.raises(ckpt.CheckpointRefusedError) as info:
        _load_checkpoint(path, map_location='cpu')  # mmengine's path: resume and load_from
    msg = str(info.value)
    assert path in msg and 'builtins.exec' in msg and 'weights_only=True' in msg
    assert isinstance(info.value, pickle.UnpicklingError)
    with pytest.raises(ckpt.CheckpointRefusedError, match='builtins.exec'):
        ckpt.load_checkpoint_file(path)
    assert not marker.exists()

    # control: the file really is live, plain unpickling runs its payload
    torch.load(path, weights_only=False)
    assert marker.read_text() == 'pwned'


def test_legacy_format_crafted_checkpoint_is_refused(tmp_path):
    marker = tmp_path / 'marker.txt'
    path = str(tmp_path / 'evil_legacy.pth')
    torch.save({'payload': _WritesMarker(str(marker))}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ckpt.CheckpointRefusedError, match=r'evil_legacy\.pth.*builtins\.exec'):
        _load_checkpoint(path, map_location='cpu')
    assert not marker.exists()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        _load_checkpoint(str(tmp_path / 'nope.pth'))
    assert os.path.exists(tmp_path)


# --- crash-safe writing and the resume fallback -------------------------------------------------

def _truncate(path, keep=0.5):
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:int(len(data) * keep)])


def test_checkpoint_problem_tells_complete_from_truncated_and_damaged(tmp_path):
    good = str(tmp_path / 'good.pth')
    torch.save({'w': torch.randn(64, 64)}, good)
    assert ckpt.checkpoint_problem(good) is None
    for keep in (0.0, 0.3, 0.99):
        path = str(tmp_path / f'cut{keep}.pth')
        torch.save({'w': torch.randn(64, 64)}, path)
        _truncate(path, keep)
        assert ckpt.checkpoint_problem(path) in ('is empty (0 bytes)',) or \
            ckpt.checkpoint_problem(path).startswith('is truncated or corrupt')
        with pytest.raises(ckpt.IncompleteCheckpointError, match=re.escape(path)):
            _load_checkpoint(path, map_location='cpu')
    damaged = str(tmp_path / 'damaged.pth')
    torch.save({'w': torch.zeros(64, 64)}, damaged)
    raw = bytearray(open(damaged, 'rb').read())
    raw[raw.index(bytes(64)) + 10] = 1  # one byte of the tensor's storage
    open(damaged, 'wb').write(bytes(raw))
    assert torch.load(damaged, weights_only=True)['w'].abs().sum() > 0  # torch loads the garbage
    assert 'fails its CRC check' in ckpt.checkpoint_problem(damaged)
    with pytest.raises(ckpt.IncompleteCheckpointError, match='CRC'):
        ckpt.load_checkpoint_file(damaged)


def test_save_is_atomic_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    from mmengine.runner import checkpoint as mm_checkpoint
    path = str(tmp_path / 'iter_1.pth')
    mm_checkpoint.save_checkpoint({'w': torch.ones(3)}, path)  # mmengine's name, now atomic
    assert ckpt.load_checkpoint_file(path)['w'].sum() == 3

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b'PK\x03\x04 partial')
        raise KeyboardInterrupt  # stands for a kill during the write

    monkeypatch.setattr(torch, 'save', dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        mm_checkpoint.save_checkpoint({'w': torch.zeros(3)}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint_file(path)['w'].sum() == 3  # the old file, whole
    assert os.listdir(tmp_path) == ['iter_1.pth']  # no temporary file left


def test_latest_complete_checkpoint_skips_newer_incomplete_files(tmp_path):
    for step in (2, 4, 6):
        torch.save({'meta': {'iter': step}}, str(tmp_path / f'iter_{step}.pth'))
    torch.save({}, str(tmp_path / 'best_mIoU_iter_6.pth'))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_6.pth'))
    assert ckpt.latest_complete_checkpoint(str(tmp_path)) == (str(tmp_path / 'iter_6.pth'), [])
    _truncate(tmp_path / 'iter_6.pth')
    path, skipped = ckpt.latest_complete_checkpoint(str(tmp_path))
    assert path == str(tmp_path / 'iter_4.pth')
    assert [p for p, _ in skipped] == [str(tmp_path / 'iter_6.pth')]
    (tmp_path / 'last_checkpoint').write_text('')  # a pointer cut short: the files still decide
    assert ckpt.latest_complete_checkpoint(str(tmp_path))[0] == str(tmp_path / 'iter_4.pth')
    for step in (2, 4):
        _truncate(tmp_path / f'iter_{step}.pth')
    assert ckpt.latest_complete_checkpoint(str(tmp_path))[0] is None


def test_resolve_resume_warns_with_both_names_and_refuses_an_incomplete_explicit_file(tmp_path, mmengine_log):
    from mmengine.config import Config

    from projects.runtime import resolve_resume
    for step in (2, 4):
        torch.save({}, str(tmp_path / f'iter_{step}.pth'))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    _truncate(tmp_path / 'iter_4.pth')
    cfg = Config(dict(resume=True, load_from=None, work_dir=str(tmp_path)))
    assert resolve_resume(cfg) == str(tmp_path / 'iter_2.pth') == cfg.load_from
    assert re.search(rf'skipping {re.escape(str(tmp_path / "iter_4.pth"))}: it is truncated.*'
                     rf'resuming from {re.escape(str(tmp_path / "iter_2.pth"))}', '\n'.join(mmengine_log))
    cfg = Config(dict(resume=True, load_from=str(tmp_path / 'iter_4.pth'), work_dir=str(tmp_path)))
    with pytest.raises(ckpt.IncompleteCheckpointError, match=r'iter_4\.pth: the checkpoint is truncated.*'
                       r'the newest complete one beside it is .*iter_2\.pth'):
        resolve_resume(cfg)
    assert resolve_resume(Config(dict(resume=False, load_from=None, work_dir=str(tmp_path)))) is None


def test_checkpoint_hook_writes_before_it_prunes(tmp_path):
    """max_keep_ckpts=1: mmengine deletes the old file before writing the new one (a kill between
    leaves no checkpoint); ours writes first, so the old one is there while the new one is written."""
    from collections import deque
    from types import SimpleNamespace

    from mmengine.fileio import get_file_backend
    from mmengine.hooks import CheckpointHook
    from mmengine.logging import MessageHub

    seen = []

    def save_checkpoint(out_dir, filename, *args, **kwargs):
        seen.append(sorted(os.listdir(out_dir)))  # what is on disk while the new file is written
        torch.save({}, os.path.join(out_dir, filename))

    runner = SimpleNamespace(work_dir=str(tmp_path), message_hub=MessageHub.get_instance('prune_test'),
                             save_checkpoint=save_checkpoint)
    hook = CheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=1)
    # what CheckpointHook.before_train sets up
    hook.out_dir, hook.file_backend = str(tmp_path), get_file_backend(str(tmp_path))
    hook.filename_tmpl, hook.args, hook.keep_ckpt_ids = 'iter_{}.pth', {}, deque()
    for step in (1, 2):
        hook._save_checkpoint_with_step(runner, step, meta=dict(iter=step))
    assert seen == [[], ['iter_1.pth', 'last_checkpoint']]
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth', 'last_checkpoint']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')
