"""Point-cloud networks (PCT family); importing registers them in the point-cloud MODELS."""
from .base import BasePointModel, PointDataPreprocessor, smooth_cross_entropy  # noqa: F401
from .pct import PCT, NaivePCT, PCTClassifier, SimplePCT  # noqa: F401
from .pct_seg import PCTPartSeg, PCTSegmentor, PCTSemSeg  # noqa: F401
