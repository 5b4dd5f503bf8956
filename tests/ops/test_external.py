"""External attention (EANet): token op, official block, multi-head EAMLP."""
import pytest
import torch

from attn_ops import ATTENTION
from tests.ops.common import (Case, PeerCase, batch_norm_eval, build, catalogue_test, conv1x1, formula_test,
                              gradcheck_test, lengths_mask, linear, softmax, zero_rows)

EPS = 1e-9   # the official L1 offset


def _masked_logits(logits, mask):
    return logits if mask is None else logits.masked_fill(~mask[:, :, None], float('-inf'))


def external_weights(op, x, mask=None):
    """A = L1 over units S of softmax over tokens N of x M_k^T: (B, 1, N, S)."""
    a = softmax(_masked_logits(torch.einsum('bnc,sc->bns', x, op.mk.weight), mask), dim=1)
    if mask is not None:
        a = torch.where(mask[:, :, None], a, torch.zeros_like(a))
    return (a / (a.sum(dim=2, keepdim=True) + EPS)).unsqueeze(1)


def external_attention(op, x, mask=None):
    a = external_weights(op, x, mask)[:, 0]
    return zero_rows(torch.einsum('bns,cs->bnc', a, op.mv.weight), mask)


def block_weights(op, x):
    b, c, h, w = x.shape
    f = conv1x1(x, op.conv1).reshape(b, c, h * w)
    a = softmax(torch.einsum('kc,bcn->bkn', op.linear_0.weight[:, :, 0], f), dim=2)   # over N
    a = a / (EPS + a.sum(dim=1, keepdim=True))                                            # over k
    return a.transpose(1, 2).unsqueeze(1)                                                 # (B, 1, N, k)


def external_attention_block(op, x):
    """The official EANet block in eval mode (BN with running statistics)."""
    b, c, h, w = x.shape
    a = block_weights(op, x)[:, 0].transpose(1, 2)                                        # (B, k, N)
    y = torch.einsum('ck,bkn->bcn', op.linear_1.weight[:, :, 0], a).reshape(b, c, h, w)
    y = batch_norm_eval(conv1x1(y, op.conv2), op.norm)
    return torch.clamp(y + x, min=0)


def multi_head_weights(op, x, mask=None):
    b, n, c = x.shape
    d = c * op.coef // op.num_heads
    t = linear(x, op.trans_dims)
    maps = []
    for h in range(op.num_heads):
        logits = _masked_logits(linear(t[:, :, h * d:(h + 1) * d], op.linear_0), mask)   # (B, N, k)
        a = softmax(logits, dim=1)                                                       # over tokens
        if mask is not None:
            a = torch.where(mask[:, :, None], a, torch.zeros_like(a))
        maps.append(a / (EPS + a.sum(dim=2, keepdim=True)))                             # over units
    return torch.stack(maps, dim=1)


def multi_head_external(op, x, mask=None):
    a = multi_head_weights(op, x, mask)
    heads = [linear(a[:, h], op.linear_1) for h in range(op.num_heads)]
    return zero_rows(linear(torch.cat(heads, dim=-1), op.proj), mask)


CASES = [
    Case(dict(type='ExternalAttention', dim=12, S=8), (2, 9, 12), external_attention, external_weights),
    Case(dict(type='ExternalAttention', dim=12, S=8), (2, 9, 12), external_attention, external_weights,
         lengths=[9, 5], id='ExternalAttention-masked'),
    Case(dict(type='ExternalAttentionBlock', dim=12, k=8), (2, 12, 3, 4), external_attention_block,
         lambda op, x: block_weights(op, x)),
    Case(dict(type='MultiHeadExternalAttention', dim=8, num_heads=2, coef=4), (2, 7, 8), multi_head_external,
         multi_head_weights),
    Case(dict(type='MultiHeadExternalAttention', dim=8, num_heads=2, coef=4), (2, 7, 8), multi_head_external,
         multi_head_weights, lengths=[7, 3], id='MultiHeadExternalAttention-masked'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test(CASES)
test_catalogue = catalogue_test([
    PeerCase(dict(type='ExternalAttention', dim=32, S=8), (4, 49, 32)),
    PeerCase(dict(type='ExternalAttention', dim=32, S=64), (4, 200, 32)),
])


def test_normalisation_axes():
    """Each memory unit's softmax sums to one over the tokens, then each token's row to one over
    the units: the documented axes, checked on the intermediate map."""
    op = build(dict(type='ExternalAttention', dim=6, S=5), torch.float64)
    x = torch.randn(3, 11, 6, dtype=torch.float64)
    col = softmax(x @ op.mk.weight.T, dim=1)
    torch.testing.assert_close(col.sum(dim=1), torch.ones(3, 5, dtype=torch.float64))
    _, w = op(x, return_attn=True)
    torch.testing.assert_close(w[:, 0], col / col.sum(dim=2, keepdim=True))
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 1, 11, dtype=torch.float64))


def test_large_inputs_that_made_nan_are_finite_and_equal_the_official_eps():
    """Issue 8: mk of std 1, inputs of scale 30, B=1, N=512, C=64, S=16: a token whose S
    softmax-over-N entries all underflow was divided 0/0. With the official eps it is 0."""
    op = ATTENTION.build(dict(type='ExternalAttention', dim=64, S=16))
    torch.nn.init.normal_(op.mk.weight, std=1.0)
    torch.nn.init.normal_(op.mv.weight, std=1.0)
    x = (torch.randn(1, 512, 64) * 30).requires_grad_()
    y = op(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(op.mk.weight.grad).all()
    _, w = op(x, return_attn=True)
    starved = w[0, 0].sum(-1) == 0                   # tokens whose S entries all underflowed
    assert starved.any() and torch.all(y[0][starved] == 0)


def test_default_init_is_the_catalogues():
    op = ATTENTION.build(dict(type='ExternalAttention', dim=512, S=64))
    assert abs(op.mk.weight.std().item() - 0.001) < 1e-4
    assert op.mk.bias is None and op.mv.bias is None


def test_block_memories_tied_at_init_and_trained_apart():
    blk = ATTENTION.build(dict(type='ExternalAttentionBlock', dim=16, k=8))
    torch.testing.assert_close(blk.linear_1.weight, blk.linear_0.weight.permute(1, 0, 2))
    assert blk.linear_1.weight.data_ptr() != blk.linear_0.weight.data_ptr()
    big = ATTENTION.build(dict(type='ExternalAttentionBlock', dim=256, k=64))
    assert abs(big.linear_1.weight.std().item() - (2 / 256) ** 0.5) < 0.01   # official: sqrt(2 / C)
    assert type(big.norm).__name__ == 'BatchNorm2d'
    gn = ATTENTION.build(dict(type='ExternalAttentionBlock', dim=16, norm_cfg=dict(type='GN', num_groups=4)))
    assert type(gn.norm).__name__ == 'GroupNorm'


@pytest.mark.parametrize('cfg,match', [
    (dict(type='MultiHeadExternalAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
    (dict(type='MultiHeadExternalAttention', dim=8, coef=3), 'coef=3 must divide 256'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)


# ----------------------------------------------------------------------------- the fused path
FUSED = [dict(type='ExternalAttention', dim=8, S=6), dict(type='MultiHeadExternalAttention', dim=8, num_heads=2, coef=2)]


@pytest.mark.parametrize('cfg', FUSED, ids=lambda c: c['type'])
def test_fused_chunked_and_recomputed_paths_equal_the_explicit_one(cfg, monkeypatch):
    """The fused node (forced at this small size), the same with the N x S map recomputed, the
    chunked path (maps formed a few tokens at a time) and the plain two-node path small maps take
    all equal the explicit double normalisation, outputs and gradients, with padding."""
    from attn_ops.ops import external
    op = build(cfg, torch.float64)
    x = torch.randn(3, 13, 8, dtype=torch.float64, requires_grad=True)
    mask = lengths_mask([13, 6, 0], 13)
    g = torch.randn(3, 13, 8, dtype=torch.float64)
    ref, _ = op(x, mask=mask, return_attn=True)
    want = torch.autograd.grad((ref * g).sum(), [x, *op.parameters()])
    variants = [dict(recompute=False), dict(recompute=True), dict(recompute=False, budget=4 * 6 * 2),
                dict(recompute=False, fused_min=external.FUSED_MIN)]
    for v in variants:
        monkeypatch.setattr(external, 'MAP_BUDGET', v.get('budget', external.MAP_BUDGET))
        monkeypatch.setattr(external, 'FUSED_MIN', v.get('fused_min', 0))
        op.recompute = v['recompute']
        out = op(x, mask=mask)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        got = torch.autograd.grad((out * g).sum(), [x, *op.parameters()], allow_unused=True)
        for a, b in zip(got, want):
            torch.testing.assert_close(torch.zeros_like(b) if a is None else a, b, rtol=1e-8, atol=1e-10)


def test_fused_node_gradcheck(monkeypatch):
    """The written-out backward of the fused node against finite differences (float64), with
    padding and the chunked two-pass form."""
    from attn_ops.ops import external
    monkeypatch.setattr(external, 'FUSED_MIN', 0)
    x = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    mk = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    mv = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    bk = torch.randn(4, dtype=torch.float64, requires_grad=True)
    mask = lengths_mask([7, 4], 7)
    for budget in (external.MAP_BUDGET, 2 * 4 * 3):
        monkeypatch.setattr(external, 'MAP_BUDGET', budget)
        assert torch.autograd.gradcheck(lambda *t: external.fused_external(t[0], t[1], t[2], mask, bk=t[3]),
                                        (x, mk, mv, bk))


def test_fused_path_keeps_at_most_one_map_for_backward():
    """The explicit path keeps two N x S maps (the softmax and the normalised one, as the
    catalogue); the fused path, which the op takes by default at this size, one, and none with
    recompute=True."""
    from attn_ops.ops.external import FUSED_MIN
    from tools.benchmark_ops import saved_bytes
    n, s, c = 2 ** 14, 32, 16
    assert n * s >= FUSED_MIN
    x = torch.randn(1, n, c, requires_grad=True)
    one_map, x_bytes = n * s * 4, n * c * 4
    fused = ATTENTION.build(dict(type='ExternalAttention', dim=c, S=s))
    explicit = saved_bytes(lambda t: fused(t, return_attn=True)[0], (x,))
    assert explicit >= x_bytes + 2 * one_map
    assert x_bytes + one_map <= saved_bytes(fused, (x,)) < x_bytes + 1.1 * one_map
    fused.recompute = True
    assert saved_bytes(fused, (x,)) < x_bytes + 0.1 * one_map


def test_multi_head_key_bias_cancels_in_the_softmax():
    """linear_0's bias adds a constant per unit to the logits of every token: the softmax over
    the tokens removes it, so it changes nothing and its gradient is zero."""
    op = build(dict(type='MultiHeadExternalAttention', dim=8, num_heads=2, coef=2), torch.float64)
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    y = op(x)
    with torch.no_grad():
        op.linear_0.bias.add_(3.0)
    torch.testing.assert_close(op(x), y)
    op(x).square().sum().backward()
    assert op.linear_0.bias.grad.abs().max() < 1e-10
