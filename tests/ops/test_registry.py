"""Every registered op builds from a config dict, through mmengine.Config and the registry tree."""
import re
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as MMENGINE_MODELS

from attn_ops import ATTENTION, UnknownOpError, build_attention
from attn_ops.layouts import example_input
from tests.ops.conftest import all_op_names, small_cfg

CORE = ['ExternalAttention', 'ExternalAttentionBlock', 'MultiHeadExternalAttention', 'OutlookAttention',
        'SelfAttention', 'MultiHeadAttention', 'CrossAttention', 'OffsetAttention']


def test_core_ops_registered():
    assert set(CORE) <= set(all_op_names())


def test_registry_is_child_of_mmengine_models():
    assert ATTENTION.parent is MMENGINE_MODELS
    assert ATTENTION.scope == 'attn_ops'
    assert MMENGINE_MODELS.children['attn_ops'] is ATTENTION


@pytest.mark.parametrize('name', all_op_names())
def test_builds_runs_and_roundtrips_through_config(name, tmp_path):
    cfg = small_cfg(name)
    op = ATTENTION.build(cfg).eval()
    assert op.layout in ('tokens', 'map')
    x = example_input(op.layout, 16, tokens=20)
    assert op(x).shape == x.shape, 'output shape equals input shape'
    # dump to a python config file and load it back
    path = tmp_path / 'op.py'
    Config(dict(attn=cfg)).dump(str(path))
    loaded = Config.fromfile(str(path))
    assert loaded.attn.to_dict() == cfg
    op2 = ATTENTION.build(loaded.attn).eval()
    op2.load_state_dict(op.state_dict())
    torch.testing.assert_close(op2(x), op(x))


@pytest.mark.parametrize('name', all_op_names())
def test_builds_scope_qualified_from_parent_tree(name):
    """mmseg and other registries of the tree reach our ops as 'attn_ops.<Name>'."""
    import projects.segmentation  # noqa: F401  (makes mmseg importable on mmcv-lite)
    from mmseg.registry import MODELS as MMSEG_MODELS
    cfg = small_cfg(name)
    cfg['type'] = 'attn_ops.' + name
    assert type(MMSEG_MODELS.build(cfg)).__name__ == name
    assert type(MMENGINE_MODELS.build(cfg)).__name__ == name


def test_unknown_type_lists_close_names():
    with pytest.raises(UnknownOpError) as err:
        ATTENTION.build(dict(type='ExternalAtention', dim=8))
    msg = str(err.value)
    assert '"ExternalAtention" is not a registered attention op' in msg
    assert 'Did you mean: ExternalAttention' in msg
    with pytest.raises(KeyError, match='Did you mean: OutlookAttention'):
        build_attention(dict(type='outlookattention'), dim=8)


def test_missing_type_key():
    with pytest.raises(KeyError, match=r'needs a "type" key, got keys \[\'dim\'\]'):
        ATTENTION.build(dict(dim=8))


def test_build_attention_fills_channel_argument():
    assert build_attention(dict(type='ExternalAttentionBlock', k=8), dim=24).channels == 24
    assert build_attention(dict(type='OutlookAttention', num_heads=2), dim=24).dim == 24
    assert build_attention(dict(type='OffsetAttention'), dim=32).channels == 32
    with pytest.raises(ValueError, match=r'ExternalAttention: config sets dim=8 but the surrounding model feeds it 16'):
        build_attention(dict(type='ExternalAttention', dim=8), dim=16)


def _math(doc: str) -> list:
    """The contents of the ``.. math::`` blocks and ``:math:`...``` roles of a docstring."""
    blocks = re.findall(r'\.\. math::\n((?:[ \t]+\S.*\n?)+)', doc)
    return blocks + re.findall(r':math:`([^`]+)`', doc)


@pytest.mark.parametrize('name', all_op_names())
def test_docstring_states_paper_and_formula(name):
    cls = ATTENTION.get(name)
    doc = cls.__doc__ or ''
    assert any('=' in m for m in _math(doc)), f'{name} docstring must state its formula as an equation in math markup'
    assert 'Shapes' in doc, f'{name} docstring must state its shapes'
    # paper: "<Name> (<Author> et al., <venue> <year>)", the author named in the class's or its family's docstring
    found = re.fullmatch(r'(\S+) \((\w+) et al\., [^)]*\b(19|20)\d\d\)(, .+)?', cls.paper)
    assert found, f'{name}.paper must read "<Name> (<Author> et al., <venue> <year>)", got {cls.paper!r}'
    family_doc = sys.modules[cls.__module__].__doc__ or ''
    assert found.group(2) in doc + family_doc, f'{name}: its docstrings do not name {cls.paper}'
    assert cls.complexity


@pytest.mark.parametrize('scope', ['mmseg', 'mmengine', 'pointcloud'])
def test_builds_under_any_default_scope(scope):
    """Heads and networks build ops while the runner's default scope is their own."""
    from mmengine.registry import DefaultScope
    import projects.segmentation  # noqa: F401  (mmseg on mmcv-lite)
    import projects.pointcloud  # noqa: F401
    with DefaultScope.overwrite_default_scope(scope):
        assert type(ATTENTION.build(dict(type='ExternalAttention', dim=8))).__name__ == 'ExternalAttention'
        assert build_attention(dict(type='OffsetAttention'), dim=8).channels == 8
        with pytest.raises(UnknownOpError, match='Did you mean: OffsetAttention'):
            build_attention(dict(type='OfsetAttention'), dim=8)
