"""Padding masks: padded tokens never change real tokens' outputs; empty samples give no NaN."""
import pytest
import torch

from attn_ops import ATTENTION
from tests.ops.conftest import mask_op_names, small_cfg


def _op(name, train=False):
    op = ATTENTION.build(small_cfg(name))
    with torch.no_grad():  # non-trivial weights (catalogue inits are N(0, 0.001))
        for p_name, p in op.named_parameters():
            if 'norm' not in p_name:
                p.normal_(0, 0.3)
    return op.train(train)


def _call(op, x, mask):
    return op(x, mask=mask)


def test_every_token_mixing_op_takes_a_mask():
    assert {'ExternalAttention', 'MultiHeadExternalAttention', 'SelfAttention', 'MultiHeadAttention',
            'CrossAttention', 'OffsetAttention'} <= set(mask_op_names())


@pytest.mark.parametrize('name', mask_op_names())
@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_padding_does_not_change_real_tokens(name, train):
    op = _op(name, train)
    lengths = [7, 4]
    real = [torch.randn(n, 16) for n in lengths]
    # the same clouds padded with garbage to two different lengths
    outs = []
    for n_pad, fill in ((9, 5.0), (13, -3.0)):
        x = torch.full((2, n_pad, 16), fill)
        x[:, :, ::2] = torch.randn(2, n_pad, 8) * 10
        mask = torch.zeros(2, n_pad, dtype=torch.bool)
        for b, r in enumerate(real):
            x[b, :len(r)] = r
            mask[b, :len(r)] = True
        torch.manual_seed(1)  # same dropout draws (rates are 0 by default anyway)
        y = _call(op, x, mask)
        assert torch.all(y[~mask] == 0), 'padded positions must be zero'
        outs.append([y[b, :n] for b, n in enumerate(lengths)])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # and equal to running each cloud alone, unpadded (eval: BN statistics are per batch in train)
    if not train:
        for r, y in zip(real, outs[0]):
            torch.testing.assert_close(op(r[None])[0], y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', mask_op_names())
def test_all_padding_sample_gives_zeros_not_nan(name):
    op = _op(name, train=True)
    x = torch.randn(3, 6, 16, requires_grad=True)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1] = False                       # an empty sample
    mask[2, 3:] = False
    y = _call(op, x, mask)
    assert torch.isfinite(y).all()
    assert torch.all(y[1] == 0)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_cross_attention_context_mask():
    op = _op('CrossAttention')
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 8, 16)
    cmask = torch.ones(2, 8, dtype=torch.bool)
    cmask[:, 6:] = False
    ctx2 = ctx.clone()
    ctx2[:, 6:] = 100.0
    torch.testing.assert_close(op(x, ctx, context_mask=cmask), op(x, ctx2, context_mask=cmask))
    torch.testing.assert_close(op(x, ctx, context_mask=cmask), op(x, ctx[:, :6]))
