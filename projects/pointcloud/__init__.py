"""Point clouds: PCT networks, datasets, transforms and metrics (scope ``pointcloud``); the point
ops they use live in :mod:`attn_ops.point_ops`.

Importing this package (configs do it through ``custom_imports``) registers every component in
the point-cloud registries of :mod:`projects.pointcloud.registry`. The runtime patches (the
checkpoint allowlist among them) are installed by :func:`projects.runtime.install_compat`, which
every tool calls through :func:`projects.runtime.load_config`.
"""
import sys

from . import registry  # noqa: E402
from .registry import DATASETS, METRICS, MODELS, TRANSFORMS  # noqa: E402,F401

# mmengine finds the registries of a default scope by importing ``<scope>.registry``; the scope
# is ``pointcloud``, so alias this package under that name (else every build warns
# "Failed to import `None.registry`" and falls back to a slower search).
sys.modules.setdefault('pointcloud', sys.modules[__name__])
sys.modules.setdefault('pointcloud.registry', registry)
from . import models  # noqa: E402,F401
from . import transforms  # noqa: E402,F401
from . import metrics  # noqa: E402,F401
from . import datasets  # noqa: E402,F401
from . import tta  # noqa: E402,F401
