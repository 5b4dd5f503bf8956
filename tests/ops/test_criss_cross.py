"""Criss-cross attention (CCNet): a naive per-pixel loop, the catalogue and mmcv's layout."""
import torch

from tests.ops.common import Case, PeerCase, build, catalogue_test, conv1x1, formula_test, gradcheck_test, softmax


def criss_cross_weights(op, x):
    """For pixel (h, w): one softmax over its column (itself excluded) then its row: (B, 1, H, W, H+W)."""
    q, k = conv1x1(x, op.query_conv), conv1x1(x, op.key_conv)
    b, _, hgt, wid = x.shape
    rows = []
    for h in range(hgt):
        cols = []
        for w in range(wid):
            e_col = torch.einsum('bc,bci->bi', q[:, :, h, w], k[:, :, :, w])
            e_col = e_col.masked_fill(torch.arange(hgt) == h, float('-inf'))
            e_row = torch.einsum('bc,bcj->bj', q[:, :, h, w], k[:, :, h, :])
            cols.append(softmax(torch.cat([e_col, e_row], dim=1), dim=1))
        rows.append(torch.stack(cols, dim=1))
    return torch.stack(rows, dim=1).unsqueeze(1)


def criss_cross(op, x):
    v = conv1x1(x, op.value_conv)
    a = criss_cross_weights(op, x)[:, 0]
    hgt = x.shape[2]
    out = torch.einsum('bhwi,bciw->bchw', a[..., :hgt], v) + torch.einsum('bhwj,bchj->bchw', a[..., hgt:], v)
    return op.gamma.scale * out + x


CASES = [Case(dict(type='CrissCrossAttention', dim=16), (2, 16, 4, 5), criss_cross, criss_cross_weights)]
test_formula = formula_test(CASES)
test_gradcheck = gradcheck_test(CASES)
test_catalogue = catalogue_test([PeerCase(dict(type='CrissCrossAttention', dim=32), (2, 32, 6, 7))])


def test_dense_attention_reproduces_the_output():
    op = build(dict(type='CrissCrossAttention', dim=16), torch.float64)
    x = torch.randn(1, 16, 4, 5, dtype=torch.float64)
    y, w = op(x, return_attn=True)
    dense = op.dense_attention(w, (4, 5))[:, 0]                                         # (1, 20, 20)
    torch.testing.assert_close(dense.sum(-1), torch.ones(1, 20, dtype=torch.float64))
    v = conv1x1(x, op.value_conv).flatten(2)                                           # (1, C, N)
    expected = op.gamma.scale * (v @ dense.transpose(1, 2)).view_as(x) + x
    torch.testing.assert_close(y, expected)


def test_parameter_names_equal_mmcvs():
    op = build(dict(type='CrissCrossAttention', dim=16))
    assert set(op.state_dict()) == {'query_conv.weight', 'query_conv.bias', 'key_conv.weight', 'key_conv.bias',
                                    'value_conv.weight', 'value_conv.bias', 'gamma.scale'}
    assert op.in_channels == 16
