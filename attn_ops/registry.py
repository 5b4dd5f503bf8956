"""The ATTENTION registry: every operator of the library is built from here.

``ATTENTION`` is an mmengine :class:`~mmengine.registry.Registry` whose parent is
mmengine's ``MODELS``; its scope is ``attn_ops``. An op therefore builds

* directly: ``ATTENTION.build(dict(type='ExternalAttention', dim=256))``;
* from any registry of the same tree (mmseg's ``MODELS`` too) with the scope-qualified
  name: ``MODELS.build(dict(type='attn_ops.ExternalAttention', dim=256))``.

An unknown ``type`` raises :class:`UnknownOpError` listing the closest registered names.
"""
from __future__ import annotations

import difflib
from typing import Any

from mmengine.config import ConfigDict
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry, build_model_from_cfg


class ConfigKeyError(KeyError):
    """A ``KeyError`` about a config key whose text prints as written (KeyError quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownOpError(ConfigKeyError):
    """Raised for a ``type`` that no registry in reach knows; the text names close matches."""


def close_names(name: str, registry: Registry, n: int = 5) -> list[str]:
    """Registered names closest to ``name`` (case-insensitive), best first."""
    names = sorted(registry.module_dict)
    lowered = {k.lower(): k for k in names}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    hits += [lowered[k] for k in lowered if name.lower() in k and lowered[k] not in hits]
    return [lowered.get(h, h) for h in hits][:n]


def _check_type(cfg: Any, registry: Registry) -> None:
    if not isinstance(cfg, (dict, ConfigDict)):
        raise TypeError(f'{registry.name} config must be a dict, got {type(cfg).__name__}: {cfg!r}')
    if 'type' not in cfg:
        raise ConfigKeyError(f'{registry.name} config needs a "type" key, got keys {sorted(cfg)}')
    obj_type = cfg['type']
    if isinstance(obj_type, str) and registry.get(obj_type) is None:
        short = obj_type.split('.')[-1]
        hint = close_names(short, registry)
        msg = f'"{obj_type}" is not a registered {registry.name} op (registry scope "{registry.scope}").'
        if hint:
            msg += ' Did you mean: ' + ', '.join(hint) + '?'
        msg += ' Registered: ' + ', '.join(sorted(registry.module_dict)) + '.'
        raise UnknownOpError(msg)


def _build(cfg, registry: Registry, default_args=None):
    """Build from this registry whatever the caller's ``default_scope``.

    mmengine's builder switches to the registry of the current default scope (``mmseg``,
    ``pointcloud``...) before looking a name up, where our ops are not found. The name is resolved
    here, in this registry and its parents, and the class handed on.
    """
    if isinstance(cfg, list):
        return build_model_from_cfg(cfg, registry, default_args)
    _check_type(cfg, registry)
    if isinstance(cfg['type'], str):
        cfg = type(cfg)(cfg)
        cfg['type'] = registry.get(cfg['type'])
    return build_model_from_cfg(cfg, registry, default_args)


ATTENTION = Registry(
    'attention', parent=MMENGINE_MODELS, scope='attn_ops', locations=['attn_ops.ops'],
    build_func=_build)


def feature_ops(layout: str | None = None) -> list[str]:
    """Sorted names of the registered ops that return features of their input's shape (every kind
    but ``pool``), optionally only those of one native ``layout``: what a head or a network can
    hold in place of an attention layer."""
    return sorted(n for n in ATTENTION.module_dict
                  if ATTENTION.get(n).kind != 'pool' and (layout is None or ATTENTION.get(n).layout == layout))


def op_class(cfg: dict) -> type:
    """The class a config names (``UnknownOpError`` with close names when none)."""
    _check_type(cfg, ATTENTION)
    return ATTENTION.get(cfg['type']) if isinstance(cfg['type'], str) else cfg['type']


def build_attention(cfg: dict, dim: int | None = None, **default_args):
    """Build an op from ``cfg``; ``dim`` fills the op's channel argument ``dim`` when absent, so
    a head or a network hands its width to any op:
    ``build_attention(dict(type='OutlookAttention', num_heads=2), dim=64)``.
    A ``cfg`` that already sets ``dim`` to another value raises ``ValueError``.
    """
    cfg = dict(cfg)
    _check_type(cfg, ATTENTION)
    if dim is not None:
        given = cfg.setdefault('dim', dim)
        if given != dim:
            raise ValueError(
                f'{cfg["type"]}: config sets dim={given} but the surrounding model feeds it '
                f'{dim} channels; drop "dim" from the config or make them agree')
    return ATTENTION.build(cfg, default_args=default_args or None)
