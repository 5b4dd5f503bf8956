"""The operator contract, checked for every registered op (README "The contract").

Declarations, config round-trips, validation errors, padding masks, both layouts, numerics (inputs
of scale 30, bf16 / fp16 autocast, float64) and the attention weights of ``return_attn=True``. A new
op is covered here by registering it; its family's test file adds its formula and catalogue cases.
"""
import inspect
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as MMENGINE_MODELS

from attn_ops import (ATTENTION, ATTN_FORMS, KINDS, AttentionOp, UnknownOpError, as_layout, build_attention,
                      feature_ops)
from attn_ops.layouts import LAYOUTS, map_to_tokens
from attn_ops.ops.layers import Scale
from tests.ops.common import as_output, build, call, input_for, lengths_mask, op_names, padded_pair, small_cfg

ALL = op_names()
FEATURE_OPS = [n for n in ALL if ATTENTION.get(n).kind != 'pool']   # output shape = input shape
BF16_TOL = 0.05   # bf16 autocast vs float32: max abs error <= 5% of the largest float32 output


def _shape(t):
    return '(' + ', '.join(map(str, t.shape)) + ')'


# ----------------------------------------------------------------------------- declarations
@pytest.mark.parametrize('name', ALL)
def test_declares_the_contract(name):
    cls = ATTENTION.get(name)
    assert issubclass(cls, AttentionOp)
    assert cls.layout in LAYOUTS and cls.kind in KINDS and cls.attn_form in (None, *ATTN_FORMS)
    if cls.kind == 'gate':
        assert cls.attn_form == 'gate', 'a gate op returns its gate g with return_attn=True'
    init = list(inspect.signature(cls.__init__).parameters.values())
    assert init[1].name == 'dim', f'{name}: the channel argument comes first and is called dim'
    fwd = inspect.signature(cls.forward).parameters
    assert list(fwd)[1] == 'x'
    for key in ('mask', 'return_attn'):
        assert fwd[key].kind is inspect.Parameter.KEYWORD_ONLY and fwd[key].default in (None, False)


@pytest.mark.parametrize('name', ALL)
def test_docstring_states_paper_formula_shapes_and_catalogue(name):
    cls = ATTENTION.get(name)
    doc = inspect.getdoc(cls) or ''
    assert '.. math::' in doc, f'{name}: the formula goes in a .. math:: block'
    assert 'Shapes' in doc and 'Args:' in doc
    assert cls.paper and cls.complexity.startswith('O(')
    status = cls.catalogue_status()
    assert re.match(r'(equal|differs: |no counterpart)', status), f'{name}: Catalogue line is {status!r}'


# ----------------------------------------------------------------------------- building
def test_registry_is_child_of_mmengine_models():
    assert ATTENTION.parent is MMENGINE_MODELS and ATTENTION.scope == 'attn_ops'
    assert MMENGINE_MODELS.children['attn_ops'] is ATTENTION


@pytest.mark.parametrize('name', ALL)
def test_builds_runs_and_roundtrips_through_config(name, tmp_path):
    cfg = small_cfg(name)
    op = ATTENTION.build(cfg).eval()
    x = input_for(op, tokens=20)
    y = call(op, x)
    if op.kind != 'pool':
        assert y.shape == x.shape, 'output shape equals input shape'
    path = tmp_path / 'op.py'
    Config(dict(attn=cfg)).dump(str(path))
    loaded = Config.fromfile(str(path))
    assert loaded.attn.to_dict() == cfg
    op2 = ATTENTION.build(loaded.attn).eval()
    op2.load_state_dict(op.state_dict())
    torch.testing.assert_close(call(op2, x), y)


@pytest.mark.parametrize('name', ALL)
def test_builds_scope_qualified_from_the_registry_tree(name):
    import projects.segmentation  # noqa: F401  (mmseg importable on mmcv-lite)
    from mmseg.registry import MODELS as MMSEG_MODELS
    cfg = dict(small_cfg(name), type='attn_ops.' + name)
    assert type(MMSEG_MODELS.build(cfg)).__name__ == name
    assert type(MMENGINE_MODELS.build(cfg)).__name__ == name


@pytest.mark.parametrize('scope', ['mmseg', 'mmengine', 'pointcloud'])
def test_builds_under_any_default_scope(scope):
    from mmengine.registry import DefaultScope
    import projects.segmentation  # noqa: F401
    import projects.pointcloud  # noqa: F401
    with DefaultScope.overwrite_default_scope(scope):
        assert type(ATTENTION.build(dict(type='ExternalAttention', dim=8))).__name__ == 'ExternalAttention'
        assert build_attention(dict(type='OffsetAttention'), dim=8).dim == 8
        with pytest.raises(UnknownOpError, match='Did you mean: OffsetAttention'):
            build_attention(dict(type='OfsetAttention'), dim=8)


def test_unknown_type_and_missing_key():
    with pytest.raises(UnknownOpError) as err:
        ATTENTION.build(dict(type='ExternalAtention', dim=8))
    assert '"ExternalAtention" is not a registered attention op' in str(err.value)
    assert 'Did you mean: ExternalAttention' in str(err.value)
    with pytest.raises(KeyError, match='Did you mean: OutlookAttention'):
        build_attention(dict(type='outlookattention'), dim=8)
    with pytest.raises(KeyError, match=r'needs a "type" key, got keys \[\'dim\'\]'):
        ATTENTION.build(dict(dim=8))


def test_build_attention_fills_dim():
    assert build_attention(dict(type='ExternalAttentionBlock', k=8), dim=24).dim == 24
    assert build_attention(dict(type='OutlookAttention', num_heads=2), dim=24).dim == 24
    with pytest.raises(ValueError, match=r'ExternalAttention: config sets dim=8 but the surrounding model feeds it 16'):
        build_attention(dict(type='ExternalAttention', dim=8), dim=16)


# ----------------------------------------------------------------------------- validation
def _expect_error(op, x, *needles, **kw):
    with pytest.raises(ValueError) as err:
        call(op, x, **kw)
    msg = str(err.value)
    assert msg.startswith(type(op).__name__), msg
    for needle in needles:
        assert needle in msg, msg
    return msg


@pytest.mark.parametrize('name', ALL)
def test_wrong_layouts_are_named(name):
    op = ATTENTION.build(small_cfg(name))
    if op.layout == 'tokens':
        exp = 'expects tokens (B, N, C) with C=16'
        bad = [(torch.randn(16, 5), None), (torch.randn(2, 5, 12), None),
               (torch.randn(2, 16, 4, 4), 'looks like a map (B, C, H, W)'),
               (torch.randn(2, 4, 4, 16), 'channels-last (B, H, W, C)'),
               (torch.randn(2, 16, 5), 'channels-first (B, C, N)')]
        if op.kind == 'pool':   # a pool op also takes maps: it pools their H*W positions
            bad = [b for b in bad if b[1] != 'looks like a map (B, C, H, W)']
    else:
        exp = 'expects a map (B, C, H, W) with C=16'
        bad = [(torch.randn(16, 4, 4), None), (torch.randn(2, 12, 4, 4), None),
               (torch.randn(2, 4, 4, 16), 'channels-last (B, H, W, C)'),
               (torch.randn(2, 9, 16), 'looks like tokens (B, N, C)')]
    for x, hint in bad:
        _expect_error(op, x, exp, 'got ' + _shape(x), *([hint] if hint else []))


@pytest.mark.parametrize('name', op_names(mask=True))
def test_bad_masks_are_named(name):
    op = ATTENTION.build(small_cfg(name))
    x = torch.randn(2, 5, 16)
    _expect_error(op, x, 'mask of shape (B, N)=(2, 5), got (2, 4)', mask=torch.ones(2, 4, dtype=torch.bool))
    _expect_error(op, x, 'as a bool tensor (B, N) with True = real token, got dtype torch.float32',
                  mask=torch.ones(2, 5))


@pytest.mark.parametrize('name', op_names(mask=False))
def test_mask_refused_where_not_supported(name):
    op = ATTENTION.build(small_cfg(name))
    x = input_for(op, tokens=16)
    _expect_error(op, x, 'takes no padding mask', f"kind '{op.kind}'",
                  mask=torch.ones(x.shape[0], x.shape[1], dtype=torch.bool))


@pytest.mark.parametrize('name', op_names(attn=False))
def test_return_attn_refused_where_no_map_is_formed(name):
    op = ATTENTION.build(small_cfg(name))
    _expect_error(op, input_for(op, tokens=16), 'forms no attention map', f"(kind '{op.kind}')",
                  return_attn=True)


# ----------------------------------------------------------------------------- masks
def _mask_op(name, train):
    return build(small_cfg(name), train=train)


@pytest.mark.parametrize('name', op_names(mask=True))
@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_padding_never_changes_real_tokens(name, train):
    op = _mask_op(name, train)
    lengths = [7, 4]
    real = [torch.randn(n, 16) for n in lengths]
    outs = []
    for x, mask in padded_pair(real):
        torch.manual_seed(1)
        y = call(op, x, mask=mask)
        if op.kind == 'pool':     # one vector per sample: no padded positions to check
            outs.append(list(y))
            continue
        assert torch.all(y[~mask] == 0), 'padded positions are zero'
        outs.append([y[b, :n] for b, n in enumerate(lengths)])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if not train:   # and equal to each sample alone, unpadded (train: BN statistics are per batch)
        for r, y in zip(real, outs[0]):
            torch.testing.assert_close(call(op, r[None])[0], y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', op_names(mask=True))
def test_all_padding_sample_gives_zeros_and_finite_gradients(name):
    op = _mask_op(name, train=True)
    x = torch.randn(3, 6, 16, requires_grad=True)
    mask = lengths_mask([6, 0, 3], 6)
    y = call(op, x, mask=mask)
    assert torch.isfinite(y).all() and torch.all(y[1] == 0)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- layouts
@pytest.mark.parametrize('name', FEATURE_OPS)
def test_runs_on_both_layouts(name):
    op = ATTENTION.build(small_cfg(name)).eval()
    x = input_for('map', 16, tokens=16)
    hw = x.shape[2:]
    for layout, inp in (('map', x), ('tokens', map_to_tokens(x))):
        assert call(as_layout(op, layout, hw=hw), inp).shape == inp.shape


@pytest.mark.parametrize('name', FEATURE_OPS)
@pytest.mark.parametrize('hw', [(9, 1), (1, 9), (4, 4)], ids=['Nx1', '1xN', '4x4'])
def test_runs_on_columns_rows_and_maps_smaller_than_its_windows(name, hw):
    """Point clouds reach map ops as N x 1 maps (PCT's layout adapter), and a 4 x 4 map is smaller
    than the defaults' 7-14 pixel windows, kernels and blocks: every op trains on them (batch 2, as
    the BatchNorms of pooled vectors need)."""
    op = as_layout(ATTENTION.build(small_cfg(name)).train(), 'map', hw=hw)
    x = torch.randn(2, 16, *hw, requires_grad=True)
    y = call(op, x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize('name', ALL)
def test_strided_inputs_give_the_same_output(name):
    """A map in channels_last memory (what a conv can hand over) and tokens that are a transposed
    view (what a map-to-token permute gives) are the same input as their contiguous copies."""
    op = ATTENTION.build(small_cfg(name)).eval()
    x = input_for(op.layout, 16, tokens=16)
    strided = (x.contiguous(memory_format=torch.channels_last) if x.dim() == 4
               else x.transpose(1, 2).contiguous().transpose(1, 2))
    assert not strided.is_contiguous()
    torch.testing.assert_close(as_output(call(op, strided)), as_output(call(op, x)), rtol=1e-4, atol=1e-5)  # conv summation order


# ----------------------------------------------------------------------------- numerics
def _finite_step(op, x):
    x = x.detach().requires_grad_()
    y = as_output(call(op, x))
    assert torch.isfinite(y.float()).all(), 'non-finite output'
    y.float().square().mean().backward()
    assert torch.isfinite(x.grad).all(), 'non-finite input gradient'
    for n, p in op.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), f'non-finite gradient of {n}'


@pytest.mark.parametrize('name', ALL)
def test_inputs_of_scale_30_give_finite_outputs_and_gradients(name):
    op = build(small_cfg(name), train=True, std=1.0)
    _finite_step(op, input_for(op, tokens=64, scale=30.0))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('name', ALL)
def test_autocast_at_scale_30_stays_finite(name, dtype):
    """bf16 has float32's range: weights of std 1 as above. fp16 tops out at 65504, so activations
    of std-1 weights on scale-30 inputs overflow in any network; it runs with the op's own init."""
    op = build(small_cfg(name), train=True, std=1.0 if dtype == torch.bfloat16 else None)
    with torch.autocast('cpu', dtype=dtype):
        _finite_step(op, input_for(op, tokens=64, scale=30.0))


@pytest.mark.parametrize('name', ALL)
def test_bf16_autocast_within_tolerance_of_float32_at_1024_tokens(name):
    op = build(small_cfg(name))
    x = input_for(op, batch=1, tokens=1024)
    with torch.no_grad():
        ref = as_output(call(op, x)).float()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = as_output(call(op, x)).float()
    err = (low - ref).abs().max().item() / ref.abs().max().item()
    assert err <= BF16_TOL, f'{name}: bf16 error {err:.3f} of the float32 output scale'


@pytest.mark.parametrize('name', ALL)
def test_double_runs_in_float64(name):
    """``.double()`` converts every tensor the op uses: none may live outside parameters and buffers."""
    op = build(small_cfg(name)).double()
    assert all(t.dtype == torch.float64 for t in [*op.parameters(), *op.buffers()] if t.is_floating_point())
    y = as_output(call(op, input_for(op, tokens=20, dtype=torch.float64)))
    assert y.dtype == torch.float64 and torch.isfinite(y).all()


# ----------------------------------------------------------------------------- attention weights
def _tokens_of(op, x):
    return x.shape[1] if op.layout == 'tokens' else x.shape[2] * x.shape[3]


@pytest.mark.parametrize('name', op_names(attn=True))
def test_return_attn_gives_the_fused_output_and_documented_weights(name):
    op = build(small_cfg(name))
    x = input_for(op, tokens=20)
    with torch.no_grad():
        fused = call(op, x)
        out, w = call(op, x, return_attn=True)
    torch.testing.assert_close(out, fused, rtol=1e-5, atol=1e-5)
    n = _tokens_of(op, x)
    assert torch.isfinite(w).all()
    if op.attn_form in ('dense', 'memory'):   # normalised forms; 'local' kernels may be signed (CoT's)
        assert (w >= 0).all(), 'attention weights are non-negative'
    if op.attn_form == 'dense':   # a pool op's outputs are its vector's entries (CSRA: the classes)
        n_out = out.shape[-1] if op.kind == 'pool' else n
        assert w.dim() == 4 and w.shape[0] == x.shape[0] and w.shape[2:] == (n_out, n)
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), rtol=1e-5, atol=1e-5)
    elif op.attn_form == 'memory':
        assert w.dim() == 4 and w.shape[0] == x.shape[0] and w.shape[2] == n
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), rtol=1e-5, atol=1e-5)
    elif op.attn_form == 'gate':
        torch.testing.assert_close(out, x * w, rtol=1e-5, atol=1e-6)
    else:
        dense = op.dense_attention(w, x.shape[2:] if op.layout == 'map' else (n, 1))
        assert dense.shape[0] == x.shape[0] and dense.shape[2:] == (n, n)
        assert torch.isfinite(dense).all()


@pytest.mark.parametrize('name', op_names(mask=True, attn=True))
def test_masked_tokens_get_exactly_zero_weight(name):
    op = build(small_cfg(name))
    x = torch.randn(2, 9, 16)
    mask = lengths_mask([9, 5], 9)
    with torch.no_grad():
        _, w = call(op, x, mask=mask, return_attn=True)
    if op.attn_form == 'dense':   # no real output takes a padded input; padded outputs take nothing
        assert torch.all(w[1, :, :, 5:] == 0)
        assert op.kind == 'pool' or torch.all(w[1, :, 5:, :] == 0)    # a pool op's outputs are not tokens
    else:                         # memory: padded tokens hold no weight
        assert torch.all(w[1, :, 5:, :] == 0)


# ----------------------------------------------------------------------------- kinds
def _starts_closed(name):
    scales = [m for m in ATTENTION.build(small_cfg(name)).modules() if isinstance(m, Scale)]
    return bool(scales) and all(float(s.scale) == 0 for s in scales)


@pytest.mark.parametrize('name', [n for n in op_names(kind='block') if _starts_closed(n)])
def test_block_with_closed_scales_starts_as_identity(name):
    """A block whose learnable residual scales (``Scale(0)``) all start at zero is the identity."""
    op = ATTENTION.build(small_cfg(name)).eval()
    x = input_for(op, tokens=20)
    torch.testing.assert_close(call(op, x), x)


# ----------------------------------------------------------------------------- a light core
def test_import_attn_ops_needs_torch_and_mmengine_only():
    import subprocess
    import sys
    code = ('import sys, attn_ops; '
            'print(sorted({m.split(".")[0] for m in sys.modules} & '
            '{"mmcv", "mmseg", "open3d", "torch_geometric", "projects", "fightingcv_attention"}))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[]', out.stdout


def test_feature_ops_are_the_ops_that_keep_their_inputs_shape():
    """What heads and networks may hold: every op but the pool kind, optionally of one layout."""
    assert 'ResidualAttention' in ALL and 'ResidualAttention' not in feature_ops()
    assert feature_ops() == FEATURE_OPS
    assert feature_ops('tokens') == [n for n in FEATURE_OPS if ATTENTION.get(n).layout == 'tokens']
    assert 'ExternalAttention' in feature_ops('tokens') and 'CBAM' not in feature_ops('tokens')
