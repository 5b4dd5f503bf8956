"""Scaled dot-product attention: self, multi-head and cross (SDPA path and the explicit path)."""
import math

import pytest
import torch

from attn_ops import ATTENTION
from tests.ops.common import (Case, PeerCase, build, catalogue_diff, catalogue_test, formula_test,
                              gradcheck_test, linear, softmax, zero_rows)


def _heads(t, h):
    b, n, c = t.shape
    return t.view(b, n, h, c // h).permute(0, 2, 1, 3)                  # (B, h, N, d)


def dot_product_weights(q, k, key_mask=None):
    """softmax over the keys of q k^T / sqrt(d): (B, h, N, M)."""
    logits = torch.einsum('bhnd,bhmd->bhnm', q, k) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[:, None, None, :], float('-inf'))
    return softmax(logits, dim=-1)


def _self_qkv(op, x):
    wq, wk, wv = op.qkv.weight.chunk(3)
    bq, bk, bv = op.qkv.bias.chunk(3) if op.qkv.bias is not None else (0, 0, 0)
    h = op.num_heads
    return _heads(x @ wq.T + bq, h), _heads(x @ wk.T + bk, h), _heads(x @ wv.T + bv, h)


def self_weights(op, x, mask=None):
    q, k, _ = _self_qkv(op, x)
    w = dot_product_weights(q, k, mask)
    return w if mask is None else torch.where(mask[:, None, :, None], w, torch.zeros_like(w))


def multi_head_attention(op, x, mask=None):
    _, _, v = _self_qkv(op, x)
    out = torch.einsum('bhnm,bhmd->bhnd', self_weights(op, x, mask), v)
    b, h, n, d = out.shape
    return zero_rows(linear(out.permute(0, 2, 1, 3).reshape(b, n, h * d), op.proj), mask)


def cross_weights(op, x, context=None, mask=None, context_mask=None):
    context = x if context is None else context
    wk, _ = op.kv.weight.chunk(2)
    return dot_product_weights(_heads(x @ op.q.weight.T, op.num_heads), _heads(context @ wk.T, op.num_heads),
                               context_mask)


def cross_attention(op, x, context=None, mask=None, context_mask=None):
    context = x if context is None else context
    _, wv = op.kv.weight.chunk(2)
    out = torch.einsum('bhnm,bhmd->bhnd', cross_weights(op, x, context, context_mask=context_mask),
                       _heads(context @ wv.T, op.num_heads))
    b, h, n, d = out.shape
    return zero_rows(linear(out.permute(0, 2, 1, 3).reshape(b, n, h * d), op.proj), mask)


_G = torch.Generator().manual_seed(3)
CONTEXT = torch.randn(2, 5, 6, generator=_G, dtype=torch.float64)
CONTEXT_MASK = torch.tensor([[True] * 5, [True, True, True, False, False]])

CASES = [
    Case(dict(type='SelfAttention', dim=8, qkv_bias=True), (2, 6, 8), multi_head_attention, self_weights),
    Case(dict(type='MultiHeadAttention', dim=8, num_heads=2, qkv_bias=True), (2, 6, 8), multi_head_attention,
         self_weights),
    Case(dict(type='MultiHeadAttention', dim=8, num_heads=2), (2, 6, 8), multi_head_attention, self_weights,
         lengths=[6, 4], id='MultiHeadAttention-masked'),
    Case(dict(type='CrossAttention', dim=8, num_heads=2), (2, 6, 8), cross_attention, cross_weights),
    Case(dict(type='CrossAttention', dim=8, num_heads=2, context_dim=6), (2, 4, 8), cross_attention, cross_weights,
         call=dict(context=CONTEXT, context_mask=CONTEXT_MASK), id='CrossAttention-context-masked'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test(CASES)
test_catalogue = catalogue_test([
    PeerCase(dict(type='SelfAttention', dim=32, qkv_bias=True), (3, 50, 32), std=0.2),
    PeerCase(dict(type='MultiHeadAttention', dim=32, num_heads=4, qkv_bias=True), (3, 50, 32), std=0.2),
    PeerCase(dict(type='MultiHeadAttention', dim=32, num_heads=4), (3, 50, 32), std=0.2, id='no-bias'),
])


def test_masked_attention_equals_the_catalogues_attention_mask():
    """Our (B, N) padding mask (True = real) equals the catalogue's (B, h, N, M) True-is-masked mask."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    op = build(dict(type='MultiHeadAttention', dim=16, num_heads=4, qkv_bias=True))
    theirs = build_peer(op)
    x = torch.randn(2, 10, 16)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    with torch.no_grad():
        expected = theirs(x, x, x, attention_mask=~mask[:, None, None, :].expand(2, 4, 10, 10))
        got = op(x, mask=mask)
    assert (got[mask] - expected[mask]).abs().max().item() < 1e-5
    assert got[~mask].abs().max().item() == 0.0


def test_catalogue_diff_is_sensitive_to_the_weights():
    """The catalogue comparison would catch a wrong projection: perturb one weight, it fails."""
    pytest.importorskip('fightingcv_attention')
    case = PeerCase(dict(type='SelfAttention', dim=16), (2, 9, 16))
    assert catalogue_diff(case) < 1e-5
    from tools.peers import catalogue
    original = catalogue.PEERS['SelfAttention']

    def swapped_copy(op, theirs):
        original.copy(op, theirs)
        with torch.no_grad():
            theirs.fc_k.weight.copy_(op.qkv.weight.chunk(3)[0])   # keys from the query weight
    catalogue.PEERS['SelfAttention'] = type(original)(**{**original.__dict__, 'copy': swapped_copy})
    try:
        assert catalogue_diff(case) > 1e-3
    finally:
        catalogue.PEERS['SelfAttention'] = original


def test_cross_attention_context_errors():
    op = ATTENTION.build(dict(type='CrossAttention', dim=16, context_dim=8))
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match=r'CrossAttention \(context\) expects tokens \(B, N, C\) with C=8, got \(2, 7, 16\)'):
        op(x, torch.randn(2, 7, 16))
    with pytest.raises(ValueError, match='context_dim=8 differs from dim=16, so a context must be given'):
        op(x)
    with pytest.raises(ValueError, match='x has batch 2 but context has batch 3'):
        op(x, torch.randn(3, 7, 8))


@pytest.mark.parametrize('cfg,match', [
    (dict(type='MultiHeadAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='CrossAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
