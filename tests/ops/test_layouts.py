"""The one adapter between layouts, and precision (bf16 autocast on CPU)."""
import pytest
import torch

from attn_ops import ATTENTION, as_layout, map_to_tokens, tokens_to_map
from attn_ops.layouts import LayoutAdapter, example_input
from tests.ops.conftest import all_op_names, small_cfg


def test_map_tokens_roundtrip_is_row_major():
    x = torch.arange(2 * 3 * 4 * 5.).view(2, 3, 4, 5)
    t = map_to_tokens(x)
    assert t.shape == (2, 20, 3)
    assert torch.equal(t[1, 5 * 2 + 3], x[1, :, 2, 3])
    assert torch.equal(tokens_to_map(t, (4, 5)), x)
    with pytest.raises(ValueError, match=r'N=H\*W=4\*4=16, got \(2, 20, 3\)'):
        tokens_to_map(t, (4, 4))


def test_token_op_on_map_equals_manual_flatten():
    op = ATTENTION.build(dict(type='ExternalAttention', dim=8)).eval()
    x = torch.randn(2, 8, 3, 5)
    adapted = as_layout(op, 'map')
    assert isinstance(adapted, LayoutAdapter) and adapted.layout == 'map'
    torch.testing.assert_close(adapted(x), tokens_to_map(op(map_to_tokens(x)), (3, 5)))
    assert as_layout(op, 'tokens') is op


def test_map_op_on_tokens():
    op = ATTENTION.build(dict(type='OutlookAttention', dim=8, num_heads=2)).eval()
    x = torch.randn(2, 8, 4, 6)
    adapted = as_layout(op, 'tokens', hw=(4, 6))
    torch.testing.assert_close(adapted(map_to_tokens(x)), map_to_tokens(op(x)))
    torch.testing.assert_close(as_layout(op, 'tokens')(map_to_tokens(x), hw=(4, 6)), map_to_tokens(op(x)))
    with pytest.raises(ValueError, match=r'grid size is unknown; pass hw=\(H, W\) with H\*W=24'):
        as_layout(op, 'tokens')(map_to_tokens(x))
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[0, -1] = False
    with pytest.raises(ValueError, match='a map op cannot honour a padding mask'):
        adapted(map_to_tokens(x), mask=mask)
    with pytest.raises(ValueError, match=r'adapted to tokens \(B, N, C\)\) expects tokens \(B, N, C\) with C=8'):
        adapted(x)


@pytest.mark.parametrize('name', all_op_names())
def test_every_op_runs_on_both_layouts(name):
    op = ATTENTION.build(small_cfg(name)).eval()
    for layout in ('tokens', 'map'):
        x = example_input('map', 16, tokens=16)
        h, w = x.shape[2:]
        inp = x if layout == 'map' else map_to_tokens(x)
        wrapped = as_layout(op, layout, hw=(h, w))
        assert wrapped(inp).shape == inp.shape


@pytest.mark.parametrize('name', all_op_names())
def test_bf16_autocast_cpu_runs_and_stays_finite(name):
    op = ATTENTION.build(small_cfg(name)).train()
    x = example_input(op.layout, 16, tokens=36)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = op(x)
    assert y.shape == x.shape and torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in op.parameters() if p.grad is not None)
