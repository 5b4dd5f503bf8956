"""The pure-PyTorch mmcv.ops stand-ins, checked against their formulas and against mmseg's users."""
import math

import pytest
import torch
import torch.nn.functional as F

from projects.compat import mmcv_ops

mmcv_ops.install()

import mmcv.ops  # noqa: E402

from attn_ops import ATTENTION  # noqa: E402
from attn_ops.ops.criss_cross import CrissCrossAttention  # noqa: E402


def test_shim_provides_our_ops_and_mmseg_imports():
    if mmcv_ops.compiled_mmcv_available():
        pytest.skip('compiled mmcv present: the shim stays out of the way')
    assert mmcv_ops.is_installed()
    assert mmcv.ops.CrissCrossAttention is CrissCrossAttention
    assert mmcv.ops.point_sample is mmcv_ops.point_sample
    import mmseg.models  # noqa: F401  (unguarded `from mmcv.ops import ...` inside)
    from mmseg.models.decode_heads import cc_head, psa_head
    from mmseg.models.losses import focal_loss
    from mmseg.models.utils import point_sample as seg_point_sample
    assert cc_head.CrissCrossAttention is CrissCrossAttention
    assert psa_head.PSAMask is None  # not provided: PSAHead refuses to build, as with mmcv-lite
    assert focal_loss._sigmoid_focal_loss is mmcv_ops.sigmoid_focal_loss
    assert seg_point_sample.point_sample is mmcv_ops.point_sample


def test_missing_op_error_names_it_and_the_alternatives():
    if mmcv_ops.compiled_mmcv_available():
        pytest.skip('compiled mmcv present')
    with pytest.raises(ModuleNotFoundError, match=r'mmcv\.ops\.DeformConv2d needs compiled mmcv.*point_sample'):
        from mmcv.ops import DeformConv2d  # noqa: F401


def test_compiled_mmcv_is_left_untouched(monkeypatch):
    """With mmcv._ext importable, install() neither builds nor replaces mmcv.ops."""
    import sys

    monkeypatch.setattr(mmcv_ops, 'compiled_mmcv_available', lambda: True)
    monkeypatch.delitem(sys.modules, 'mmcv.ops', raising=False)
    monkeypatch.setattr(mmcv_ops, 'build_shim', lambda: pytest.fail('shim built despite compiled mmcv'))
    assert mmcv_ops.install() is False
    assert 'mmcv.ops' not in sys.modules  # the real package would be imported on demand


def test_install_is_idempotent():
    assert mmcv_ops.install() == mmcv_ops.is_installed()
    assert mmcv_ops.install() == mmcv_ops.is_installed()


# ---------------------------------------------------------------- point_sample
def test_point_sample_hand_example():
    # 2x2 image, pixel centres at 0.25 / 0.75 in normalised coordinates (align_corners=False)
    img = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    pts = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5], [0.5, 0.25]]])
    out = mmcv_ops.point_sample(img, pts)
    assert out.shape == (1, 1, 5)
    torch.testing.assert_close(out[0, 0], torch.tensor([1.0, 2.0, 3.0, 2.5, 1.5]))


def test_point_sample_is_grid_sample_on_rescaled_points():
    torch.manual_seed(0)
    img = torch.randn(2, 3, 5, 7)
    pts = torch.rand(2, 4, 6, 2)
    for align in (False, True):
        ref = F.grid_sample(img, 2 * pts - 1, align_corners=align)
        torch.testing.assert_close(mmcv_ops.point_sample(img, pts, align_corners=align), ref)
    flat = mmcv_ops.point_sample(img, pts.view(2, 24, 2))
    torch.testing.assert_close(flat, mmcv_ops.point_sample(img, pts).view(2, 3, 24))


def test_point_sample_bad_points():
    with pytest.raises(ValueError, match=r'points \(N, P, 2\).*got \(2, 4, 3\)'):
        mmcv_ops.point_sample(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 3))


# ---------------------------------------------------------------- sigmoid_focal_loss
def _focal_by_hand(x, t, gamma, alpha, weight=None):
    n, k = x.shape
    out = torch.zeros(n, k, dtype=torch.float64)
    for i in range(n):
        for c in range(k):
            p = 1.0 / (1.0 + math.exp(-float(x[i, c])))
            if int(t[i]) == c:
                v = -alpha * (1 - p) ** gamma * math.log(p)
            else:
                v = -(1 - alpha) * p ** gamma * math.log(1 - p)
            if weight is not None and int(t[i]) < k:
                v *= float(weight[t[i]])
            out[i, c] = v
    return out


@pytest.mark.parametrize('gamma,alpha', [(2.0, 0.25), (0.0, 0.5), (1.5, 0.75)])
def test_sigmoid_focal_loss_matches_written_formula(gamma, alpha):
    torch.manual_seed(1)
    x = torch.randn(6, 4, dtype=torch.float64) * 3
    t = torch.tensor([0, 1, 2, 3, 4, 2])  # 4 = background: every class negative
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    ref = _focal_by_hand(x, t, gamma, alpha)
    torch.testing.assert_close(mmcv_ops.sigmoid_focal_loss(x, t, gamma, alpha, None, 'none'), ref)
    torch.testing.assert_close(mmcv_ops.sigmoid_focal_loss(x, t, gamma, alpha, None, 'sum'), ref.sum())
    torch.testing.assert_close(mmcv_ops.sigmoid_focal_loss(x, t, gamma, alpha, None, 'mean'), ref.sum() / 6)
    torch.testing.assert_close(mmcv_ops.sigmoid_focal_loss(x, t, gamma, alpha, w, 'none'),
                               _focal_by_hand(x, t, gamma, alpha, w))


def test_sigmoid_focal_loss_agrees_with_mmseg_python_version_and_has_gradients():
    from mmseg.models.losses.focal_loss import py_sigmoid_focal_loss

    torch.manual_seed(2)
    x = torch.randn(10, 5, requires_grad=True)
    t = torch.randint(0, 5, (10,))
    one_hot = F.one_hot(t, 5).float()
    ours = mmcv_ops.sigmoid_focal_loss(x, t, 2.0, 0.25, None, 'none')
    ref = py_sigmoid_focal_loss(x, one_hot, one_hot, gamma=2.0, alpha=0.25, reduction='none')
    torch.testing.assert_close(ours, ref)
    ours.sum().backward()
    g = x.grad.clone()
    x.grad = None
    ref.sum().backward()
    torch.testing.assert_close(g, x.grad)


def test_sigmoid_focal_loss_validates():
    with pytest.raises(ValueError, match='int64 target'):
        mmcv_ops.sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r'input \(N, K\) and target \(N,\)'):
        mmcv_ops.sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------- CrissCrossAttention
# (the op itself is tested in tests/ops/test_criss_cross.py; here: mmseg's CCHead runs on it)
def test_mmseg_cchead_runs_without_compiled_mmcv():
    from mmseg.models.decode_heads import CCHead

    torch.manual_seed(5)
    head = CCHead(in_channels=16, channels=16, num_classes=3, recurrence=2)
    with torch.no_grad():
        head.cca.gamma.scale.fill_(0.5)
    out = head([torch.randn(2, 16, 6, 7)])
    assert out.shape == (2, 3, 6, 7)
    out.sum().backward()
    assert head.cca.query_conv.weight.grad.abs().sum() > 0
