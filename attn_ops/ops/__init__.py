"""Every op family in its own module; importing this package registers them all in ATTENTION."""
from .base import AttentionOp  # noqa: F401
from .external import ExternalAttention, ExternalAttentionBlock, MultiHeadExternalAttention  # noqa: F401
from .outlook import OutlookAttention  # noqa: F401
from .dot_product import CrossAttention, MultiHeadAttention, SelfAttention  # noqa: F401
from .offset import OffsetAttention  # noqa: F401
from .criss_cross import CrissCrossAttention  # noqa: F401
from .channel import (ECAAttention, ParNetAttention, PyramidSplitAttention, S2Attention, SEAttention,  # noqa: F401
                      ShuffleAttention, SKAttention, SpatialGroupEnhance)
from .window import CrossFormerAttention, HaloAttention, MOAGlobalAttention, WindowAttention  # noqa: F401
from .axial import AxialAttention, RelativeAttention2d  # noqa: F401
from .deformable import DeformableAttention  # noqa: F401
from .nonlocal_ import ACmix, ChannelAttention, CoTAttention, DoubleAttention, DualAttention, PositionAttention  # noqa: F401
from .pooling import ResidualAttention  # noqa: F401
from .spatial import BAM, CBAM, CoordAttention, PolarizedSelfAttention, SimAM, TripletAttention  # noqa: F401
from .efficient import (AFTConv, AFTFull, AFTLocal, AFTSimple, EMSA, MobileViTv2Attention, MUSEAttention,  # noqa: F401
                        SimplifiedSelfAttention, UFOAttention)
from .mixer import GlobalFilter, MobileViTAttention, WeightedPermuteMLP  # noqa: F401
from .point import PointTransformerAttention  # noqa: F401
