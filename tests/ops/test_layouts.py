"""The one adapter between layouts; masks and norms of the layout helpers."""
import pytest
import torch

from attn_ops import ATTENTION, as_layout, map_to_tokens, tokens_to_map
from attn_ops.layouts import LayoutAdapter


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


def test_adapter_passes_return_attn_and_declares_the_op():
    op = ATTENTION.build(dict(type='MultiHeadAttention', dim=8, num_heads=2)).eval()
    x = torch.randn(2, 8, 3, 4)
    adapted = as_layout(op, 'map')
    assert (adapted.dim, adapted.kind, adapted.attn_form) == (8, 'attention', 'dense')
    y, w = adapted(x, return_attn=True)
    ref_y, ref_w = op(map_to_tokens(x), return_attn=True)
    torch.testing.assert_close(y, tokens_to_map(ref_y, (3, 4)))
    torch.testing.assert_close(w, ref_w)


def test_build_norm_follows_the_layout_and_mmcv_spelling():
    from attn_ops.ops.layers import build_norm
    assert type(build_norm(dict(type='BN'), 8, 'map')).__name__ == 'BatchNorm2d'
    assert type(build_norm(dict(type='BN'), 8, 'tokens')).__name__ == 'BatchNorm1d'
    assert type(build_norm(dict(type='SyncBN'), 8, 'tokens')).__name__ == 'SyncBatchNorm'
    assert type(build_norm(dict(type='LN'), 8, 'tokens')).__name__ == 'LayerNorm'
    gn = build_norm(dict(type='GN', num_groups=2, requires_grad=False), 8, 'map')
    assert gn.num_groups == 2 and not gn.weight.requires_grad
    with pytest.raises(KeyError, match="norm type 'XN' is not known"):
        build_norm(dict(type='XN'), 8, 'map')
    with pytest.raises(KeyError, match='needs "num_groups"'):
        build_norm(dict(type='GN'), 8, 'map')
