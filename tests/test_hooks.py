"""projects/hooks.py in-process on a toy regression with dropout and random augmentation (the
end-to-end kill-and-resume runs of the demo configs are in tests/tools/test_resume_e2e.py)."""
import random

import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import projects.hooks  # noqa: F401  (registers the hooks)
from projects.compat.checkpoint import install as install_checkpoint_patches
from projects.hooks import NonFiniteLossError, add_default_hooks, rng_state, set_rng_state

install_checkpoint_patches()


class Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.drop = nn.Dropout(0.5)

    def forward(self, inputs, labels, mode='loss'):
        pred = self.lin(self.drop(torch.stack(inputs))).squeeze(-1)
        return dict(loss=((pred - torch.stack(labels)) ** 2).mean(), loss_aux=pred.abs().mean() * 0)


class NoisyData(Dataset):
    """Each load draws numpy noise (an augmentation); ``loads`` counts the loads in this process."""
    loads = 0

    def __len__(self):
        return 8

    def __getitem__(self, i):
        NoisyData.loads += 1
        x = torch.arange(4, dtype=torch.float32) * (i + 1) / 8 + torch.from_numpy(np.random.randn(4)).float()
        return dict(inputs=x, labels=torch.tensor(float(i % 3)))


def _runner(work_dir, max_iters, num_workers=0, **kwargs):
    return Runner(
        model=Toy(), work_dir=str(work_dir), experiment_name=f'toy_{work_dir.name}_{max_iters}',
        train_dataloader=dict(dataset=NoisyData(), sampler=dict(type='InfiniteSampler', shuffle=True),
                              batch_size=2, num_workers=num_workers, collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False, max_keep_ckpts=-1),
                           exact_resume=dict(type='ExactResumeHook'), logger=dict(type='LoggerHook', interval=1),
                           non_finite_loss=dict(type='NonFiniteLossHook')),
        randomness=dict(seed=0), **kwargs)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    state = rng_state()
    draws = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn(), random.gauss(0, 1))
    torch.save(state, tmp_path / 'rng.pth')
    set_rng_state(torch.load(tmp_path / 'rng.pth', weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn(), random.gauss(0, 1))
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2:] == again[2:]


@pytest.mark.parametrize('num_workers', [0, 2])
def test_resume_equals_uninterrupted_and_skips_without_loading(tmp_path, num_workers):
    full = _runner(tmp_path / 'full', 8, num_workers)
    full.train()
    NoisyData.loads = 0
    resumed = _runner(tmp_path / 'resumed', 8, num_workers, resume=True,
                      load_from=str(tmp_path / 'full' / 'iter_3.pth'))
    resumed.train()
    for name, p in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], p), name
    if num_workers == 0:  # iterations 4-8 only: the 3 trained batches were skipped, not loaded
        assert NoisyData.loads == 5 * 2
    # control: without the hook the continuation differs (dropout and the noise draw new numbers)
    plain = _runner(tmp_path / 'plain', 8, num_workers, resume=True,
                    load_from=str(tmp_path / 'full' / 'iter_3.pth'))
    plain._hooks = [h for h in plain.hooks if type(h).__name__ != 'ExactResumeHook']
    plain.train()
    assert not torch.equal(plain.model.lin.weight, full.model.lin.weight)


class NaNAt(Toy):
    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, inputs, labels, mode='loss'):
        self.calls += 1
        losses = super().forward(inputs, labels, mode)
        if self.calls == self.at:
            losses['loss_aux'] = losses['loss_aux'] + float('inf')
        return losses


def test_non_finite_loss_stops_before_the_step(tmp_path):
    runner = _runner(tmp_path / 'nan', 8)
    runner.model = NaNAt(5)  # not yet trained: the hooks wrap this model in before_train
    with pytest.raises(NonFiniteLossError, match=r'Non-finite loss at iteration 5: loss_aux=inf; training stopped '
                       r'before applying this step; the last good checkpoint is .*iter_3\.pth'):
        runner.train()
    assert torch.isfinite(runner.model.lin.weight).all()


def test_default_hooks_are_added_configurable_and_removable():
    from mmengine.config import Config
    cfg = Config(dict(default_hooks=dict(logger=dict(type='LoggerHook'))))
    add_default_hooks(cfg)
    assert cfg.default_hooks.exact_resume == dict(type='ExactResumeHook')
    assert cfg.default_hooks.non_finite_loss == dict(type='NonFiniteLossHook', action='stop')
    assert cfg.default_hooks.logger == dict(type='LoggerHook')
    cfg = Config(dict(default_hooks=dict(exact_resume=None)))
    cfg.merge_from_dict({'default_hooks.non_finite_loss.action': 'skip'})  # as --cfg-options does
    add_default_hooks(cfg)
    assert 'exact_resume' not in cfg.default_hooks
    assert cfg.default_hooks.non_finite_loss == dict(type='NonFiniteLossHook', action='skip')
