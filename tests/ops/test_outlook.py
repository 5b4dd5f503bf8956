"""Outlook attention (VOLO): an explicit loop over window centres, strides, the catalogue's unfold bug."""
import math

import pytest
import torch

from attn_ops import ATTENTION
from tests.ops.common import Case, PeerCase, build, catalogue_test, formula_test, gradcheck_test, softmax


def _windows(op, x):
    """Per window centre (i, j): (top-left offset, K^2 x K^2 weights per head) in loop order."""
    b, c, hgt, wid = x.shape
    k, s, heads = op.kernel_size, op.stride, op.num_heads
    for i in range(math.ceil(hgt / s)):
        for j in range(math.ceil(wid / s)):
            centre = x[:, :, i * s:(i + 1) * s, j * s:(j + 1) * s].mean(dim=(2, 3))    # ceil-mode average
            logits = (centre @ op.attn.weight.T + op.attn.bias).view(b, heads, k * k, k * k)
            yield i * s, j * s, softmax(logits * (c // heads) ** -0.5, dim=-1)        # over sources


def outlook_weights(op, x):
    return torch.stack([a for _, _, a in _windows(op, x)], dim=2)                   # (B, h, L, K2, K2)


def outlook_attention(op, x):
    b, c, hgt, wid = x.shape
    k, p, heads = op.kernel_size, op.padding, op.num_heads
    v = torch.einsum('oc,bchw->bohw', op.v.weight, x)
    if op.v.bias is not None:
        v = v + op.v.bias.view(1, -1, 1, 1)
    vpad = torch.nn.functional.pad(v, (p, p, p, p))
    acc = torch.zeros(b, c, hgt + 2 * p, wid + 2 * p, dtype=x.dtype)
    for top, left, a in _windows(op, x):
        win = vpad[:, :, top:top + k, left:left + k].reshape(b, heads, c // heads, k * k)
        acc[:, :, top:top + k, left:left + k] += torch.einsum('bhts,bhds->bhdt', a, win).reshape(b, c, k, k)
    y = acc[:, :, p:p + hgt, p:p + wid]
    return torch.einsum('oc,bchw->bohw', op.proj.weight, y) + op.proj.bias.view(1, -1, 1, 1)


CASES = [
    Case(dict(type='OutlookAttention', dim=8, num_heads=2), (2, 8, 5, 4), outlook_attention, outlook_weights),
    Case(dict(type='OutlookAttention', dim=8, num_heads=2, stride=2), (2, 8, 5, 7), outlook_attention,
         outlook_weights),
    Case(dict(type='OutlookAttention', dim=6, num_heads=1, kernel_size=5, padding=2, stride=3, qkv_bias=True),
         (1, 6, 7, 8), outlook_attention, outlook_weights),
]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test(CASES)
test_catalogue = catalogue_test([
    PeerCase(dict(type='OutlookAttention', dim=32, num_heads=1), (2, 32, 7, 7)),
    PeerCase(dict(type='OutlookAttention', dim=32, num_heads=2), (2, 32, 8, 6)),
    PeerCase(dict(type='OutlookAttention', dim=32, num_heads=4), (2, 32, 5, 9)),
    # stride > 1 against the catalogue with its unfold fixed (see the defect test below)
    PeerCase(dict(type='OutlookAttention', dim=32, num_heads=2, stride=2), (2, 32, 8, 6)),
    PeerCase(dict(type='OutlookAttention', dim=32, num_heads=4, stride=2), (2, 32, 7, 9)),
    PeerCase(dict(type='OutlookAttention', dim=32, num_heads=1, stride=3), (2, 32, 7, 8)),
])


def test_catalogue_is_broken_for_stride_2():
    """The catalogue builds nn.Unfold(kernel_size, padding, stride): positionally that is
    (kernel_size, dilation, padding), so stride > 1 unfolds at stride 1 and fails to reshape."""
    pytest.importorskip('fightingcv_attention')
    from tools.peers.catalogue import build_peer
    theirs = build_peer(build(dict(type='OutlookAttention', dim=32, num_heads=2, stride=2)), fixed=False)
    assert theirs.unflod.dilation == 1 and theirs.unflod.padding == 2 and theirs.unflod.stride == 1
    with pytest.raises(RuntimeError, match='is invalid for input of size'):
        theirs(torch.randn(2, 8, 6, 32))


def test_dense_attention_reproduces_the_output():
    """The dense (N x N) form of the window weights, applied to the values, gives the op's output."""
    op = build(dict(type='OutlookAttention', dim=8, num_heads=2, stride=2), torch.float64)
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    y, w = op(x, return_attn=True)
    dense = op.dense_attention(w, (5, 6))                                           # (1, 2, 30, 30)
    v = torch.einsum('oc,bchw->bhwo', op.v.weight, x).reshape(1, 30, 2, 4).transpose(1, 2)
    mixed = (dense @ v).transpose(1, 2).reshape(1, 30, 8)
    expected = (mixed @ op.proj.weight.T + op.proj.bias).transpose(1, 2).reshape(1, 8, 5, 6)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize('stride,hw', [(2, (6, 6)), (2, (5, 7)), (3, (7, 4))])
def test_stride_keeps_resolution(stride, hw):
    op = build(dict(type='OutlookAttention', dim=8, num_heads=2, stride=stride))
    assert op(torch.randn(1, 8, *hw)).shape == (1, 8, *hw)
    assert op.attn.out_features == 2 * 3 ** 4   # heads x K^4 weights per centre


@pytest.mark.parametrize('cfg,match', [
    (dict(type='OutlookAttention', dim=8, padding=0),
     'expected an odd kernel_size with padding=kernel_size//2, got kernel_size=3, padding=0'),
    (dict(type='OutlookAttention', dim=10, num_heads=4), 'dim=10 is not divisible by num_heads=4'),
])
def test_bad_constructor_arguments(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATTENTION.build(cfg)
