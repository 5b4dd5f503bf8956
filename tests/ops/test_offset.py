"""PCT's offset-attention: the formula in PCT's (B, C, N) convention, the chunked path, numerics."""
import pytest
import torch

from attn_ops import ATTENTION
from tests.ops.common import Case, batch_norm_eval, build, formula_test, gradcheck_test, softmax

EPS = 1e-9


def offset_map(op, x, mask=None):
    """PCT's A (B, N_i, N_j): softmax over keys j of q_i . q_j, then L1 over queries i."""
    q = torch.einsum('oc,bnc->bon', op.qk.weight, x)                     # (B, C/4, N)
    energy = torch.einsum('boi,boj->bij', q, q)
    if mask is not None:
        energy = energy.masked_fill(~mask[:, None, :], float('-inf'))
    a = softmax(energy, dim=2)
    if mask is not None:
        a = torch.where(mask[:, :, None], a, torch.zeros_like(a))
    return a / (EPS + a.sum(dim=1, keepdim=True))


def offset_weights(op, x, mask=None):
    """The documented dense form: W[b, 0, j, i] = A_ij."""
    return offset_map(op, x, mask).transpose(1, 2).unsqueeze(1)


def offset_attention(op, x, mask=None):
    """The SA layer in eval mode, written in PCT's (B, C, N) convention with explicit axes."""
    xc = x.transpose(1, 2)                                                # (B, C, N)
    v = torch.einsum('oc,bcn->bon', op.v.weight, xc) + op.v.bias.view(1, -1, 1)
    x_r = torch.einsum('bci,bij->bcj', v, offset_map(op, x, mask))         # F_sa,j = sum_i v_i A_ij
    t = torch.einsum('oc,bcn->bon', op.trans.weight, xc - x_r) + op.trans.bias.view(1, -1, 1)
    y = (xc + torch.clamp(batch_norm_eval(t, op.norm), min=0)).transpose(1, 2)
    return y if mask is None else torch.where(mask[:, :, None], y, torch.zeros_like(y))


CASES = [
    Case(dict(type='OffsetAttention', dim=8), (2, 6, 8), offset_attention, offset_weights),
    Case(dict(type='OffsetAttention', dim=8, chunk_size=4), (2, 9, 8), offset_attention, offset_weights,
         id='OffsetAttention-chunked'),
    Case(dict(type='OffsetAttention', dim=8, chunk_size=4), (2, 9, 8), offset_attention, offset_weights,
         lengths=[9, 6], id='OffsetAttention-chunked-masked'),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test(CASES)


def test_shares_the_query_key_weight():
    op = ATTENTION.build(dict(type='OffsetAttention', dim=64))
    # qk (64*16) + v (64*64+64) + trans (64*64+64) + BN (2*64)
    assert sum(p.numel() for p in op.parameters()) == 64 * 16 + 2 * (64 * 64 + 64) + 2 * 64


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_chunked_equals_full_with_masks_and_gradients(train):
    full = build(dict(type='OffsetAttention', dim=8, chunk_size=None), torch.float64, train)
    chunked = build(dict(type='OffsetAttention', dim=8, chunk_size=3), torch.float64, train)
    chunked.load_state_dict(full.state_dict())
    x = torch.randn(3, 11, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[1, 7:] = False
    mask[2] = False                                   # an empty sample
    y_full, y_chunk = full(x, mask=mask), chunked(x, mask=mask)
    torch.testing.assert_close(y_chunk, y_full, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(y_full)
    torch.testing.assert_close(torch.autograd.grad((y_chunk * g).sum(), x)[0],
                               torch.autograd.grad((y_full * g).sum(), x)[0], rtol=1e-9, atol=1e-12)


def test_chunked_path_keeps_no_n_by_n_map():
    from tools.benchmark_ops import saved_bytes
    n = 512
    x = torch.randn(1, n, 16, requires_grad=True)
    full = ATTENTION.build(dict(type='OffsetAttention', dim=16, chunk_size=None)).train()
    chunked = ATTENTION.build(dict(type='OffsetAttention', dim=16, chunk_size=64)).train()
    n_by_n = n * n * 4
    assert saved_bytes(full, (x,)) > 2 * n_by_n
    assert saved_bytes(chunked, (x,)) < n_by_n / 2
    assert ATTENTION.build(dict(type='OffsetAttention', dim=16)).chunk_size == 256   # the default


def test_chunked_sums_run_in_float32_under_fp16_autocast():
    """Issue 8: the chunked column sums overflowed in fp16; they now accumulate in float32 and the
    chunked path equals the full one under autocast."""
    full = build(dict(type='OffsetAttention', dim=16, chunk_size=None), std=1.0)
    chunked = build(dict(type='OffsetAttention', dim=16, chunk_size=64), std=1.0)
    chunked.load_state_dict(full.state_dict())
    x = torch.randn(1, 1024, 16) * 4
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.float16):
        y_full, y_chunk = full(x), chunked(x)
    assert torch.isfinite(y_chunk).all()
    torch.testing.assert_close(y_chunk.float(), y_full.float(), rtol=0.02, atol=0.05)


@pytest.mark.parametrize('cfg,match', [
    (dict(type='OffsetAttention', dim=10), 'dim=10 must be divisible by 4'),
    (dict(type='OffsetAttention', dim=16, chunk_size=0), 'chunk_size must be a positive int or None, got 0'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
