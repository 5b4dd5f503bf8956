"""The training hooks every run of this repository's tools gets, registered in mmengine's root
``HOOKS`` so that any default scope finds them. :func:`add_default_hooks` (called by
:func:`projects.runtime.build_runner`) puts :data:`DEFAULT_HOOKS` into a config's
``default_hooks``, under any entry the config or ``--cfg-options`` gives.

``ExactResumeHook`` (``default_hooks.exact_resume``)
    Checkpoints carry what mmengine leaves out for a bit-identical continuation on the same
    machine: the torch (CPU and CUDA), numpy and python RNG states of every rank and the train
    sampler's seed. On ``--resume`` it fast-forwards an ``IterBasedTrainLoop``'s sampler
    without loading the skipped batches, then restores the RNG states right before the first
    new batch is loaded. Validation runs between saved RNG snapshots, so evaluating (or not)
    never changes the training stream.

``NonFiniteLossHook`` (``default_hooks.non_finite_loss``)
    A NaN or Inf loss stops training before that step is applied, with a message naming the
    iteration, the non-finite loss terms and the last good checkpoint (``action='stop'``), or
    drops the step and keeps going (``action='skip'``).

Configured like mmengine's own default hooks: ``--cfg-options
default_hooks.non_finite_loss.action=skip``; disabled with ``default_hooks.<name>=None``.
"""
from __future__ import annotations

import logging
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, all_reduce, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner.loops import IterBasedTrainLoop, _InfiniteDataloaderIterator
from torch.utils.data.dataloader import _SingleProcessDataLoaderIter

RESUME_KEY = 'resume_state'
DEFAULT_HOOKS = dict(exact_resume=dict(type='ExactResumeHook'),
                     non_finite_loss=dict(type='NonFiniteLossHook', action='stop'))


def add_default_hooks(cfg) -> None:
    """Merge :data:`DEFAULT_HOOKS` into ``cfg.default_hooks``: an entry the config sets is applied
    over the default (``dict(action='skip')`` keeps the type), ``None`` removes the hook."""
    hooks = cfg.get('default_hooks') or {}
    for name, default in DEFAULT_HOOKS.items():
        if name in hooks and hooks[name] is None:
            hooks.pop(name)
        else:
            hooks[name] = {**default, **dict(hooks.get(name) or {})}
    cfg.default_hooks = hooks


def rng_state() -> dict:
    """This process's RNG states as tensors and primitives (safe under ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = dict(
        torch=torch.get_rng_state(),
        numpy=dict(kind=str(kind), keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached_gaussian)),
        python=dict(version=int(version), internal=torch.tensor(internal, dtype=torch.int64),
                    gauss_next=gauss_next))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state['torch'].cpu())
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].cpu().numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(p['internal'].tolist()), p['gauss_next']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


def train_sampler(dataloader):
    """The sampler that orders the training data (inside a batch sampler if there is one)."""
    return getattr(getattr(dataloader, 'batch_sampler', None), 'sampler', None) or dataloader.sampler


class _FastForward:
    """Stands for ``IterBasedTrainLoop.dataloader_iterator`` while the loop skips the batches
    already trained: each skipped step draws one batch of indices from the sampler without
    loading it (single-process loading), then ``on_done`` runs and the loop gets the real
    iterator back. With worker processes the skipped batches are loaded and dropped, as
    mmengine does, which replays the workers' own RNG streams too."""

    def __init__(self, loop: IterBasedTrainLoop, steps: int, on_done):
        self.loop, self.inner, self.steps, self.on_done = loop, loop.dataloader_iterator, steps, on_done

    def __iter__(self):
        return self

    def __next__(self):
        it = getattr(self.inner, '_iterator', None)
        skipped = False
        if isinstance(it, _SingleProcessDataLoaderIter) and it._sampler_iter is not None:
            try:
                it._next_index()  # the indices of one batch; nothing is loaded
                it._num_yielded += 1
                skipped = True
            except StopIteration:  # end of a finite sampler's epoch: let the wrapper restart it
                pass
        if not skipped:
            next(self.inner)
        self.steps -= 1
        if self.steps == 0:
            self.loop.dataloader_iterator = self.inner
            self.on_done()
        return None


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Save and restore what a bit-identical resume needs beyond mmengine's checkpoint (see the
    module docstring). Runs before ``CheckpointHook`` in ``after_train_iter``/``after_train_epoch``."""

    priority = 'LOW'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None   # resume state waiting for the first train epoch
        self._gathered: Optional[tuple] = None  # (iter, per-rank states) gathered for a due save
        self._val_snapshot: Optional[dict] = None

    # --- saving ---------------------------------------------------------------------------
    @staticmethod
    def _save_due(runner, by_epoch: bool) -> bool:
        """Will a ``CheckpointHook`` save after this iteration (epoch)? Asked of the hooks themselves."""
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
                continue
            if by_epoch and (hook.every_n_epochs(runner, hook.interval, hook.save_begin)
                             or (hook.save_last and hook.is_last_train_epoch(runner))):
                return True
            if not by_epoch and (hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
                                 or (hook.save_last and hook.is_last_train_iter(runner))):
                return True
        return False

    def _gather_if_due(self, runner, by_epoch: bool) -> None:
        # checkpoints are written by rank 0 alone: the other ranks' states travel before the save
        if get_world_size() > 1 and self._save_due(runner, by_epoch):
            self._gathered = (runner.iter, all_gather_object(rng_state()))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._gather_if_due(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_due(runner, by_epoch=True)

    def before_val(self, runner) -> None:
        self._val_snapshot = rng_state()

    def after_val(self, runner) -> None:
        if self._val_snapshot is not None:
            set_rng_state(self._val_snapshot)
            self._val_snapshot = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        world_size = get_world_size()
        own = self._val_snapshot if self._val_snapshot is not None else rng_state()
        if world_size == 1:
            states: List[Optional[dict]] = [own]
        elif self._gathered is not None and self._gathered[0] == runner.iter:
            states = list(self._gathered[1])
        else:  # e.g. a best checkpoint saved during validation: only this rank's state is at hand
            states = [own] + [None] * (world_size - 1)
        sampler = train_sampler(runner.train_dataloader)
        checkpoint[RESUME_KEY] = dict(rng=states, world_size=world_size,
                                      sampler_seed=getattr(sampler, 'seed', None))

    # --- resuming -------------------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning) starts fresh streams on purpose
        state = checkpoint.get(RESUME_KEY)
        if state is None:
            print_log('ExactResumeHook: the checkpoint has no RNG states (written without this hook): '
                      'training continues from the seeded RNG, not bit-identical to an uninterrupted run',
                      logger='current', level=logging.WARNING)
        self._pending = state

    def before_train_epoch(self, runner) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        rank, world_size = get_rank(), get_world_size()
        states = pending['rng']
        state = states[rank] if rank < len(states) else None
        if len(states) != world_size or state is None:
            print_log(f'ExactResumeHook: the checkpoint holds RNG states for {len(states)} rank(s) '
                      f'(this run has {world_size}); rank {rank} continues from the seeded RNG',
                      logger='current', level=logging.WARNING)
        loop = runner.train_loop
        sampler = train_sampler(loop.dataloader)
        seed = pending.get('sampler_seed')
        if seed is not None and getattr(sampler, 'seed', seed) != seed:
            print_log(f'ExactResumeHook: train sampler seed {sampler.seed} -> {seed} (the checkpoint\'s)',
                      logger='current')
            sampler.seed = seed

        def restore():
            if state is not None:
                set_rng_state(state)

        if isinstance(loop, IterBasedTrainLoop) and runner.iter > 0 and \
                isinstance(loop.dataloader_iterator, _InfiniteDataloaderIterator):
            loop.dataloader_iterator = _FastForward(loop, runner.iter, restore)
            return
        if not isinstance(loop, IterBasedTrainLoop):
            if runner.iter % max(len(loop.dataloader), 1):
                print_log(f'ExactResumeHook: iteration {runner.iter} is inside epoch {runner.epoch + 1}; '
                          f'{type(loop).__name__} restarts that epoch from its first batch, so this run '
                          'will not equal an uninterrupted one (save checkpoints at epoch ends)',
                          logger='current', level=logging.WARNING)
            if getattr(loop.dataloader, 'persistent_workers', False):
                print_log('ExactResumeHook: persistent loader workers restart from their seeds, so '
                          'their random augmentations will differ from an uninterrupted run',
                          logger='current', level=logging.WARNING)
        restore()


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN/Inf loss; the message names the iteration, terms and checkpoint."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop (``action='stop'``) or skip (``action='skip'``) a training step whose loss is NaN/Inf.

    The check runs between the loss and the backward pass (the model's ``parse_losses`` and the
    optimizer wrapper's ``update_params`` are wrapped in ``before_train``), so a bad step never
    reaches the weights. Under DDP the ranks agree through one all-reduce per step. ``skip``
    still runs the backward pass (DDP's gradient reduction expects it), then discards the
    gradients and restores the buffers (BatchNorm statistics) of before the step.
    """

    priority = 'NORMAL'

    def __init__(self, action: str = 'stop') -> None:
        if action not in ('stop', 'skip'):
            raise ValueError(f'NonFiniteLossHook: action must be "stop" or "skip", got {action!r}')
        self.action = action
        self.skipped = 0
        self._terms: dict = {}
        self._buffers: Optional[list] = None

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        optim_wrapper = runner.optim_wrapper
        if not hasattr(optim_wrapper, 'update_params'):
            print_log(f'NonFiniteLossHook: {type(optim_wrapper).__name__} has no update_params; '
                      'non-finite losses are not checked', logger='current', level=logging.WARNING)
            return
        parse_losses, update_params = model.parse_losses, optim_wrapper.update_params

        def checked_parse_losses(losses):
            loss, log_vars = parse_losses(losses)
            self._terms = log_vars
            return loss, log_vars

        def checked_update_params(loss, *args, **kwargs):
            bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0)
            if get_world_size() > 1:
                all_reduce(bad, op='sum')
            if not bad.item():
                return update_params(loss, *args, **kwargs)
            message = self._describe(runner)
            if self.action == 'stop':
                raise NonFiniteLossError(f'{message}; training stopped before applying this step; '
                                         f'{self._last_checkpoint(runner)}. To skip such steps instead: '
                                         '--cfg-options default_hooks.non_finite_loss.action=skip')
            optim_wrapper.backward(loss)
            optim_wrapper.zero_grad()
            if self._buffers is not None:
                with torch.no_grad():
                    for buf, saved in zip(model.buffers(), self._buffers):
                        buf.copy_(saved)
            self.skipped += 1
            print_log(f'{message}; step skipped ({self.skipped} skipped so far)', logger='current',
                      level=logging.WARNING)

        model.parse_losses = checked_parse_losses
        optim_wrapper.update_params = checked_update_params

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.action == 'skip':
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            self._buffers = [b.detach().clone() for b in model.buffers()]

    def _describe(self, runner) -> str:
        terms = [f'{k}={float(v):g}' for k, v in self._terms.items()
                 if k != 'loss' and not np.isfinite(float(v))]
        if not terms:
            terms = ['the total loss' + (' (finite on this rank, not on another)' if get_world_size() > 1 else '')]
        where = f'iteration {runner.iter + 1}'
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            where += f' (epoch {runner.epoch + 1})'
        if get_world_size() > 1:
            where += f' on rank {get_rank()}'
        return f'Non-finite loss at {where}: {", ".join(terms)}'

    @staticmethod
    def _last_checkpoint(runner) -> str:
        last = runner.message_hub.get_info('last_ckpt')
        if not last:
            return 'no checkpoint was saved before it'
        return f'the last good checkpoint is {last} (tools/train.py CONFIG --resume continues from it)'
