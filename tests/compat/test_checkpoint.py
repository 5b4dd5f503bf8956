"""Checkpoints load with weights_only=True plus mmengine's allowlist; crafted pickles are refused."""
import os
import pickle

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
