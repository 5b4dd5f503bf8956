"""Bad input raises ValueError naming the op, the expected layout/shape and the shape it got."""
import re

import pytest
import torch

from attn_ops import ATTENTION
from tests.ops.conftest import all_op_names, small_cfg


def _shape(t):
    return '(' + ', '.join(map(str, t.shape)) + ')'


def _expect(op, x, expected, **kw):
    with pytest.raises(ValueError) as err:
        op(x, **kw)
    msg = str(err.value)
    assert msg.startswith(type(op).__name__), msg
    assert expected in msg, msg
    return msg


@pytest.mark.parametrize('name', all_op_names())
def test_wrong_rank_channels_and_layout(name):
    op = ATTENTION.build(small_cfg(name))
    if op.layout == 'tokens':
        exp = 'expects tokens (B, N, C) with C=16'
        bad = [torch.randn(16, 5), torch.randn(2, 5, 12), torch.randn(2, 16, 4, 4), torch.randn(2, 4, 4, 16),
               torch.randn(2, 16, 5)]
        hints = [None, None, 'looks like a map (B, C, H, W)', 'channels-last (B, H, W, C)', 'channels-first (B, C, N)']
    else:
        exp = 'expects a map (B, C, H, W) with C=16'
        bad = [torch.randn(16, 4, 4), torch.randn(2, 12, 4, 4), torch.randn(2, 4, 4, 16), torch.randn(2, 9, 16)]
        hints = [None, None, 'channels-last (B, H, W, C)', 'looks like tokens (B, N, C)']
    for x, hint in zip(bad, hints):
        msg = _expect(op, x, exp)
        assert 'got ' + _shape(x) in msg
        if hint:
            assert hint in msg


@pytest.mark.parametrize('name', [n for n in all_op_names() if ATTENTION.get(n).supports_mask])
def test_bad_masks(name):
    op = ATTENTION.build(small_cfg(name))
    x = torch.randn(2, 5, 16)
    msg = _expect(op, x, 'mask of shape (B, N)=(2, 5), got (2, 4)', mask=torch.ones(2, 4, dtype=torch.bool))
    msg = _expect(op, x, 'as a bool tensor (B, N) with True = real token, got dtype torch.float32',
                  mask=torch.ones(2, 5))
    assert msg


def test_cross_attention_context_errors():
    op = ATTENTION.build(dict(type='CrossAttention', dim=16, context_dim=8))
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match=re.escape('CrossAttention (context) expects tokens (B, N, C) with C=8, got (2, 7, 16)')):
        op(x, torch.randn(2, 7, 16))
    with pytest.raises(ValueError, match='context_dim=8 differs from dim=16, so a context must be given'):
        op(x)
    with pytest.raises(ValueError, match='x has batch 2 but context has batch 3'):
        op(x, torch.randn(3, 7, 8))


@pytest.mark.parametrize('cfg,match', [
    (dict(type='MultiHeadAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='MultiHeadExternalAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='OutlookAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='OffsetAttention', channels=10), 'channels=10 must be divisible by 4'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
