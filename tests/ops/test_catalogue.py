"""Against the packaged External-Attention-pytorch catalogue (fightingcv-attention 1.0.0) with
weights copied across: max abs difference < 1e-5 in float32. The catalogue is channels-last for
Outlook attention and uses separate q/k/v linears; the copies below translate both."""
import pytest
import torch

from attn_ops import ATTENTION

fcv = pytest.importorskip('fightingcv_attention')
from fightingcv_attention.attention.ExternalAttention import ExternalAttention as FcvEA  # noqa: E402
from fightingcv_attention.attention.OutlookAttention import OutlookAttention as FcvOutlook  # noqa: E402
from fightingcv_attention.attention.SelfAttention import ScaledDotProductAttention as FcvSDPA  # noqa: E402

TOL = dict(rtol=0, atol=1e-5)


def _bigger(module, std=0.3):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)


@pytest.mark.parametrize('n,S', [(49, 8), (200, 64)])
def test_external_attention_matches_catalogue(n, S):
    theirs = FcvEA(d_model=32, S=S).eval()
    _bigger(theirs)
    ours = ATTENTION.build(dict(type='ExternalAttention', dim=32, S=S)).eval()
    ours.load_state_dict(theirs.state_dict())          # same names: mk, mv
    x = torch.randn(4, n, 32)
    diff = (ours(x) - theirs(x)).abs().max().item()
    assert diff < 1e-5, diff


def test_external_attention_default_init_is_catalogues():
    ours = ATTENTION.build(dict(type='ExternalAttention', dim=512, S=64))
    assert abs(ours.mk.weight.std().item() - 0.001) < 1e-4
    assert ours.mk.bias is None and ours.mv.bias is None


def _outlook_pair(stride, heads):
    theirs = FcvOutlook(dim=32, num_heads=heads, stride=stride, attn_drop=0.0).eval()
    _bigger(theirs)
    ours = ATTENTION.build(dict(type='OutlookAttention', dim=32, num_heads=heads, stride=stride)).eval()
    ours.load_state_dict({k.replace('v_pj.', 'v.'): v for k, v in theirs.state_dict().items()})
    return theirs, ours


@pytest.mark.parametrize('heads,hw', [(1, (7, 7)), (2, (8, 6)), (4, (5, 9))])
def test_outlook_attention_matches_catalogue(heads, hw):
    theirs, ours = _outlook_pair(1, heads)
    x = torch.randn(2, 32, *hw)
    expected = theirs(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)   # catalogue is (B, H, W, C)
    diff = (ours(x) - expected).abs().max().item()
    assert diff < 1e-5, diff


def test_catalogue_outlook_is_broken_for_stride_2():
    """fightingcv builds nn.Unfold(kernel_size, padding, stride): positionally that is
    (kernel_size, dilation, padding), so stride > 1 unfolds at stride 1 and fails to reshape."""
    theirs, _ = _outlook_pair(2, 2)
    assert theirs.unflod.dilation == 1 and theirs.unflod.padding == 2 and theirs.unflod.stride == 1
    with pytest.raises(RuntimeError, match='is invalid for input of size'):
        theirs(torch.randn(2, 8, 6, 32))


@pytest.mark.parametrize('stride,heads,hw', [(2, 2, (8, 6)), (2, 4, (7, 9)), (3, 1, (7, 8))])
def test_outlook_stride_matches_catalogue_with_its_unfold_fixed(stride, heads, hw):
    theirs, ours = _outlook_pair(stride, heads)
    theirs.unflod = torch.nn.Unfold(kernel_size=3, padding=1, stride=stride)
    x = torch.randn(2, 32, *hw)
    expected = theirs(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    diff = (ours(x) - expected).abs().max().item()
    assert diff < 1e-5, diff


def _copy_sdpa(theirs, ours):
    with torch.no_grad():
        ours.qkv.weight.copy_(torch.cat([theirs.fc_q.weight, theirs.fc_k.weight, theirs.fc_v.weight]))
        ours.qkv.bias.copy_(torch.cat([theirs.fc_q.bias, theirs.fc_k.bias, theirs.fc_v.bias]))
        ours.proj.weight.copy_(theirs.fc_o.weight)
        ours.proj.bias.copy_(theirs.fc_o.bias)


@pytest.mark.parametrize('heads', [1, 4])
def test_dot_product_attention_matches_catalogue(heads):
    theirs = FcvSDPA(d_model=32, d_k=32 // heads, d_v=32 // heads, h=heads, dropout=0.0).eval()
    _bigger(theirs, 0.2)
    cfg = (dict(type='SelfAttention', dim=32, qkv_bias=True) if heads == 1 else
           dict(type='MultiHeadAttention', dim=32, num_heads=heads, qkv_bias=True))
    ours = ATTENTION.build(cfg).eval()
    _copy_sdpa(theirs, ours)
    x = torch.randn(3, 50, 32)
    diff = (ours(x) - theirs(x, x, x)).abs().max().item()
    assert diff < 1e-5, diff


def test_masked_attention_matches_catalogue_mask():
    """Our (B, N) padding mask equals the catalogue's (B, h, N, M) True-is-masked attention mask."""
    theirs = FcvSDPA(d_model=16, d_k=4, d_v=4, h=4, dropout=0.0).eval()
    ours = ATTENTION.build(dict(type='MultiHeadAttention', dim=16, num_heads=4, qkv_bias=True)).eval()
    _copy_sdpa(theirs, ours)
    x = torch.randn(2, 10, 16)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    expected = theirs(x, x, x, attention_mask=~mask[:, None, None, :].expand(2, 4, 10, 10))
    got = ours(x, mask=mask)
    assert (got[mask] - expected[mask]).abs().max().item() < 1e-5
    assert got[~mask].abs().max().item() == 0.0
