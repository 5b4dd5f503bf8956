"""attn_ops: attention operators with one layout contract, registered in mmengine."""
from .registry import ATTENTION, UnknownOpError, build_attention  # noqa: F401
from . import ops  # noqa: F401  (registers every op)
from .layouts import LayoutAdapter, as_layout, map_to_tokens, tokens_to_map  # noqa: F401

__version__ = '0.1.0'
__all__ = ['ATTENTION', 'build_attention', 'UnknownOpError', 'LayoutAdapter', 'as_layout',
           'map_to_tokens', 'tokens_to_map']
