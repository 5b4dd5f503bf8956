"""Each op against its formula written out in tests/ops/reference.py: outputs and gradients."""
import pytest
import torch

from attn_ops import ATTENTION
from tests.ops import reference as ref


def _randomise_norm(norm):
    with torch.no_grad():
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)


def _scale_up(op, std=0.5):
    """Catalogue inits are tiny (N(0, 0.001)): use weights that make the softmaxes non-trivial."""
    with torch.no_grad():
        for name, p in op.named_parameters():
            if 'norm' not in name:
                p.normal_(0, std)


def _build(cfg):
    op = ATTENTION.build(cfg).double().eval()
    _scale_up(op)
    if hasattr(op, 'norm'):
        _randomise_norm(op.norm)
    return op


CASES = [
    (dict(type='ExternalAttention', dim=12, S=8), (2, 9, 12), lambda op, x: ref.external_attention(x, op.mk.weight, op.mv.weight)),
    (dict(type='ExternalAttentionBlock', channels=12, k=8), (2, 12, 3, 4), lambda op, x: ref.external_attention_block(x, op)),
    (dict(type='MultiHeadExternalAttention', dim=8, num_heads=2, coef=4), (2, 7, 8), lambda op, x: ref.multi_head_external(x, op)),
    (dict(type='OutlookAttention', dim=8, num_heads=2), (2, 8, 5, 4), lambda op, x: ref.outlook_attention(x, op)),
    (dict(type='OutlookAttention', dim=8, num_heads=2, stride=2), (2, 8, 5, 7), lambda op, x: ref.outlook_attention(x, op)),
    (dict(type='OutlookAttention', dim=6, num_heads=1, kernel_size=5, padding=2, stride=3, qkv_bias=True), (1, 6, 7, 8), lambda op, x: ref.outlook_attention(x, op)),
    (dict(type='SelfAttention', dim=8, qkv_bias=True), (2, 6, 8), lambda op, x: ref.multi_head_attention(x, op)),
    (dict(type='MultiHeadAttention', dim=8, num_heads=2, qkv_bias=True), (2, 6, 8), lambda op, x: ref.multi_head_attention(x, op)),
    (dict(type='CrossAttention', dim=8, num_heads=2), (2, 6, 8), lambda op, x: ref.cross_attention(x, x, op)),
    (dict(type='OffsetAttention', channels=8), (2, 6, 8), lambda op, x: ref.offset_attention(x, op)),
    (dict(type='OffsetAttention', channels=8, chunk_size=4), (2, 9, 8), lambda op, x: ref.offset_attention(x, op)),
]
IDS = [f"{c['type']}-{i}" for i, (c, _, _) in enumerate(CASES)]


@pytest.mark.parametrize('cfg,shape,formula', CASES, ids=IDS)
def test_forward_and_gradients_match_formula(cfg, shape, formula):
    op = _build(cfg)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    out, expected = op(x), formula(op, x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)
    # gradients w.r.t. input and every parameter agree with the formula's autograd
    g = torch.randn_like(out)
    params = [p for p in op.parameters() if p.requires_grad]
    got = torch.autograd.grad((out * g).sum(), [x, *params], allow_unused=True)
    want = torch.autograd.grad((expected * g).sum(), [x, *params], allow_unused=True)
    for a, b in zip(got, want):
        if b is None:
            continue
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize('cfg,shape,formula', CASES, ids=IDS)
def test_gradcheck(cfg, shape, formula):
    op = _build(cfg)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-5)


def test_external_attention_normalisation_axes():
    """Each memory unit's weights sum to one over tokens *before* the L1 step; each token's row
    sums to one after it: check the documented axes directly on the intermediate map."""
    op = _build(dict(type='ExternalAttention', dim=6, S=5))
    x = torch.randn(3, 11, 6, dtype=torch.float64)
    out = op(x)
    logits = x @ op.mk.weight.T
    col = ref.softmax(logits, dim=1)
    torch.testing.assert_close(col.sum(dim=1), torch.ones(3, 5, dtype=torch.float64))
    a = col / col.sum(dim=2, keepdim=True)
    torch.testing.assert_close(a.sum(dim=2), torch.ones(3, 11, dtype=torch.float64))
    torch.testing.assert_close(out, a @ op.mv.weight.T)


def test_block_memories_tied_at_init_and_trained_apart():
    blk = ATTENTION.build(dict(type='ExternalAttentionBlock', channels=16, k=8))
    torch.testing.assert_close(blk.linear_1.weight, blk.linear_0.weight.permute(1, 0, 2))
    assert blk.linear_1.weight.data_ptr() != blk.linear_0.weight.data_ptr()
    # official init: std sqrt(2 / C) for the shared memory, sqrt(2 / (1*1*C)) for the 1x1 convs
    big = ATTENTION.build(dict(type='ExternalAttentionBlock', channels=256, k=64))
    assert abs(big.linear_1.weight.std().item() - (2 / 256) ** 0.5) < 0.01
    assert big.norm.__class__.__name__ == 'BatchNorm2d'
    gn = ATTENTION.build(dict(type='ExternalAttentionBlock', channels=16, norm_cfg=dict(type='GN', num_groups=4)))
    assert gn.norm.__class__.__name__ == 'GroupNorm'


def test_offset_attention_shares_query_key_weight():
    op = ATTENTION.build(dict(type='OffsetAttention', channels=64))
    n_params = sum(p.numel() for p in op.parameters())
    # qk (64*16) + v (64*64+64) + trans (64*64+64) + BN (2*64)
    assert n_params == 64 * 16 + 2 * (64 * 64 + 64) + 2 * 64


@pytest.mark.parametrize('stride,hw', [(2, (6, 6)), (2, (5, 7)), (3, (7, 4))])
def test_outlook_stride_keeps_resolution(stride, hw):
    op = _build(dict(type='OutlookAttention', dim=8, num_heads=2, stride=stride))
    x = torch.randn(1, 8, *hw, dtype=torch.float64)
    assert op(x).shape == x.shape
    assert op.attn.out_features == 2 * 3 ** 4   # heads x K^4 weights per centre


def test_outlook_rejects_misaligned_padding():
    with pytest.raises(ValueError, match=r'OutlookAttention: expected an odd kernel_size with padding=kernel_size//2, got kernel_size=3, padding=0'):
        ATTENTION.build(dict(type='OutlookAttention', dim=8, padding=0))


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_chunked_offset_attention_matches_full_with_masks(train):
    full = _build(dict(type='OffsetAttention', channels=8, chunk_size=None)).train(train)
    chunked = _build(dict(type='OffsetAttention', channels=8, chunk_size=3)).train(train)
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


def test_chunked_offset_attention_keeps_no_n_by_n_map():
    from tools.benchmark_ops import saved_bytes
    n = 512
    x = torch.randn(1, n, 16, requires_grad=True)
    full = ATTENTION.build(dict(type='OffsetAttention', channels=16, chunk_size=None)).train()
    chunked = ATTENTION.build(dict(type='OffsetAttention', channels=16, chunk_size=64)).train()
    n_by_n = n * n * 4
    assert saved_bytes(full, (x,)) > 2 * n_by_n
    assert saved_bytes(chunked, (x,)) < n_by_n / 2
    assert ATTENTION.build(dict(type='OffsetAttention', channels=16)).chunk_size == 256   # the default
    with pytest.raises(ValueError, match='chunk_size must be a positive int or None, got 0'):
        ATTENTION.build(dict(type='OffsetAttention', channels=16, chunk_size=0))
