"""Hooks the end-to-end tests load into tools/train.py through ``custom_imports`` (test-only).

``KillAtIterHook``: the process SIGKILLs itself after iteration ``at`` (a real kill -9: no
``finally`` blocks, no atexit), after every other hook of that iteration ran.
``PoisonInputsAtIterHook``: fills the inputs of iteration ``at`` with NaN (a non-finite loss there).
``DumpGradsHook``: writes the gradients of the first optimizer step to ``out`` (rank 0), before
the optimizer touches them.
"""
import os
import signal

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAtIterHook(Hook):
    priority = 'LOWEST'

    def __init__(self, at: int):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            print(f'KillAtIterHook: SIGKILL after iteration {self.at}', flush=True)
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class PoisonInputsAtIterHook(Hook):
    def __init__(self, at: int):
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 != self.at:
            return
        inputs = data_batch['inputs']
        if isinstance(inputs, list):  # mmseg: a list of uint8 images -> make the first one float NaN
            inputs[0] = torch.full(inputs[0].shape, float('nan'))
        else:  # a PyG batch
            inputs.pos[:] = float('nan')


@HOOKS.register_module()
class DumpGradsHook(Hook):
    def __init__(self, out: str):
        self.out = out

    def before_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        wrapper, step = runner.optim_wrapper, runner.optim_wrapper.step

        def dump_then_step(*args, **kwargs):
            if not os.path.exists(self.out) and get_rank() == 0:
                torch.save({n: p.grad.detach().clone() for n, p in model.named_parameters()
                            if p.grad is not None}, self.out)
            return step(*args, **kwargs)

        wrapper.step = dump_then_step
