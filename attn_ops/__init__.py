"""attn_ops: attention operators with one layout contract, registered in mmengine.

Needs torch and mmengine only; mmseg, mmcv, open3d and torch-geometric stay outside the library.
"""
from .registry import ATTENTION, UnknownOpError, build_attention, feature_ops, op_class  # noqa: F401
from . import ops  # noqa: F401  (registers every op)
from .layouts import LayoutAdapter, as_layout, map_to_tokens, tokens_to_map  # noqa: F401
from .ops.base import ATTN_FORMS, KINDS, AttentionOp, adds_identity  # noqa: F401

__version__ = '0.1.0'
__all__ = ['ATTENTION', 'ATTN_FORMS', 'AttentionOp', 'KINDS', 'LayoutAdapter', 'UnknownOpError',
           'adds_identity', 'as_layout', 'build_attention', 'feature_ops', 'map_to_tokens', 'op_class',
           'tokens_to_map']
