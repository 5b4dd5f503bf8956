"""Attention pooling (CSRA): the official multi-head formula written out, the paper's Algorithm 1 (the
catalogue), masks, maps and tokens, and the callers that must refuse a pool op."""
import math

import pytest
import torch

from attn_ops import ATTENTION, adds_identity, as_layout
from tests.ops.common import Case, PeerCase, build, catalogue_test, formula_test, gradcheck_test, softmax


def csra_scores(op, x):
    """s[b, h, i, j] = x_j . m_i^h (/ |m_i^h| when normalised): (B, heads, K, N) from tokens or a map."""
    tokens = x.flatten(2).transpose(1, 2) if x.dim() == 4 else x
    w = op.classifier.weight.reshape(op.num_heads, op.num_classes, op.dim)
    s = torch.einsum('bjc,hic->bhij', tokens, w)
    if op.normalize:
        s = s / torch.sqrt((w ** 2).sum(-1))[None, :, :, None]
    return s


def csra_weights(op, x, mask=None):
    """softmax_j(T_h s_ij) over the real tokens; the one-hot of the max for T = inf."""
    s = csra_scores(op, x)
    real = torch.ones(s.shape[0], s.shape[-1], dtype=torch.bool) if mask is None else mask
    out = torch.zeros_like(s)
    for b in range(s.shape[0]):
        idx = real[b].nonzero()[:, 0]
        if len(idx) == 0:
            continue
        for h, t in enumerate(op.temperatures):
            sr = s[b, h][:, idx]
            if math.isinf(t):
                out[b, h, torch.arange(s.shape[2]), idx[sr.argmax(dim=1)]] = 1.0
            else:
                out[b, h][:, idx] = softmax(t * sr, dim=1)
    return out


def csra(op, x, mask=None):
    """y_i = sum_h mean_j s_ij + lam * (sum_j a_ij s_ij, or max_j s_ij at T = inf), real tokens only."""
    s = csra_scores(op, x)
    real = torch.ones(s.shape[0], s.shape[-1], dtype=torch.bool) if mask is None else mask
    a = csra_weights(op, x, mask)
    rows = []
    for b in range(s.shape[0]):
        idx = real[b].nonzero()[:, 0]
        y = torch.zeros(op.num_classes, dtype=x.dtype)
        if len(idx):
            for h, t in enumerate(op.temperatures):
                sr = s[b, h][:, idx]
                att = sr.max(dim=1).values if math.isinf(t) else (a[b, h][:, idx] * sr).sum(1)
                y = y + sr.mean(dim=1) + op.lam * att
        rows.append(y)
    return torch.stack(rows)


CASES = [
    Case(dict(type='ResidualAttention', dim=8, num_classes=5), (2, 7, 8), csra, csra_weights),
    Case(dict(type='ResidualAttention', dim=8, num_classes=3, lam=0.5, num_heads=4), (2, 9, 8), csra, csra_weights),
    Case(dict(type='ResidualAttention', dim=8, num_classes=4, num_heads=2, normalize=False), (3, 6, 8), csra,
         csra_weights, lengths=[6, 2, 4]),
    Case(dict(type='ResidualAttention', dim=6, num_classes=4, num_heads=2, temperatures=(0.5, 3.0)), (2, 6, 3, 4),
         csra, csra_weights, id='map-input'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test([
    Case(dict(type='ResidualAttention', dim=6, num_classes=3, num_heads=2, temperatures=(1.0, 4.0)), (2, 5, 6), csra),
    Case(dict(type='ResidualAttention', dim=6, num_classes=3), (1, 6, 2, 3), csra),
])
# the catalogue is the paper's Algorithm 1: one max-pooling head, classifier not normalised
test_catalogue = catalogue_test([
    PeerCase(dict(type='ResidualAttention', dim=32, num_classes=10, lam=0.2, temperatures=(math.inf,),
                  normalize=False), (2, 49, 32)),
    PeerCase(dict(type='ResidualAttention', dim=16, num_classes=20, lam=1.0, temperatures=(math.inf,),
                  normalize=False), (3, 12, 16)),
])


def test_a_map_is_pooled_as_its_tokens():
    op = build(dict(type='ResidualAttention', dim=8, num_heads=4))
    x = torch.randn(2, 8, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(op(x), op(x.flatten(2).transpose(1, 2)))
    with pytest.raises(ValueError, match='a map has no padding'):
        op(x, mask=torch.ones(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match=r'expects tokens \(B, N, C\) with C=8 or a map \(B, C, H, W\), got '
                                         r'\(2, 3, 5, 8\); this looks channels-last'):
        op(x.permute(0, 2, 3, 1))


def test_lambda_zero_is_the_classifier_on_average_pooled_features():
    """The residual: with lam = 0 the logits are the (normalised) classifier of the mean feature."""
    op = build(dict(type='ResidualAttention', dim=8, num_classes=5, lam=0.0), torch.float64)
    x = torch.randn(3, 10, 8, dtype=torch.float64)
    w = op.classifier.weight
    expected = x.mean(1) @ (w / w.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(op(x), expected)


def test_large_temperature_approaches_max_pooling():
    x = torch.randn(2, 16, 8)
    hot = build(dict(type='ResidualAttention', dim=8, num_classes=4, temperatures=(1e4,)))
    inf = build(dict(type='ResidualAttention', dim=8, num_classes=4, temperatures=(math.inf,)))
    with torch.no_grad():
        torch.testing.assert_close(hot(x), inf(x), rtol=1e-4, atol=1e-4)
        a, w = inf(x, return_attn=True)
    assert torch.all(w.sum(-1) == 1) and torch.all((w == 0) | (w == 1))


def test_official_temperatures_per_head_count():
    for heads, temps in [(1, (1.0,)), (2, (1.0, math.inf)), (4, (1.0, 2.0, 4.0, math.inf)),
                         (8, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.inf))]:
        op = ATTENTION.build(dict(type='ResidualAttention', dim=8, num_heads=heads))
        assert op.temperatures == temps and op.classifier.weight.shape == (heads * 20, 8)
    op = ATTENTION.build(dict(type='ResidualAttention', dim=8))
    assert (op.num_classes, op.lam, op.num_heads, op.normalize) == (20, 0.1, 1, True)


def test_callers_of_feature_ops_refuse_a_pool_op():
    op = ATTENTION.build(dict(type='ResidualAttention', dim=8))
    with pytest.raises(ValueError, match='AttnHead: ResidualAttention is a pool op'):
        adds_identity(op, caller='AttnHead')
    with pytest.raises(ValueError, match='ResidualAttention is a pool op .* call it on its own layout'):
        as_layout(op, 'map')


@pytest.mark.parametrize('cfg,match', [
    (dict(type='ResidualAttention', dim=8, num_heads=3), r'official temperatures exist for num_heads in \[1, 2, 4, '
                                                          r'6, 8\], got 3'),
    (dict(type='ResidualAttention', dim=8, num_heads=2, temperatures=(1.0,)),
     r'expected 2 positive temperatures \(one per head\), got \(1.0,\)'),
    (dict(type='ResidualAttention', dim=8, temperatures=(0.0,)), 'expected 1 positive temperatures'),
    (dict(type='ResidualAttention', dim=8, num_classes=0), 'num_classes must be >= 1, got 0'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
