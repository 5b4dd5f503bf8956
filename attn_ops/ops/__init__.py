"""Every op family in its own module; importing this package registers them all in ATTENTION."""
from .base import AttentionOp  # noqa: F401
from .external import ExternalAttention, ExternalAttentionBlock, MultiHeadExternalAttention  # noqa: F401
from .outlook import OutlookAttention  # noqa: F401
from .dot_product import CrossAttention, MultiHeadAttention, SelfAttention  # noqa: F401
from .offset import OffsetAttention  # noqa: F401
from .criss_cross import CrissCrossAttention  # noqa: F401
from .efficient import (AFTConv, AFTFull, AFTLocal, AFTSimple, EMSA, MobileViTv2Attention, MUSEAttention,  # noqa: F401
                        SimplifiedSelfAttention, UFOAttention)
from .mixer import GlobalFilter, MobileViTAttention, WeightedPermuteMLP  # noqa: F401
