import pytest
import torch

from attn_ops import ATTENTION


def small_cfg(name: str, channels: int = 16) -> dict:
    """The smallest config of a registered op: just its channel argument."""
    return {'type': name, ATTENTION.get(name).dim_arg: channels}


def all_op_names():
    return sorted(ATTENTION.module_dict)


def mask_op_names():
    return [n for n in all_op_names() if ATTENTION.get(n).supports_mask]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
