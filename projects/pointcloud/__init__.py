"""Point clouds: PCT networks, datasets, transforms, metrics and point ops (scope ``pointcloud``).

Importing this package (configs do it through ``custom_imports``) installs the checkpoint
allowlist (``torch.load(weights_only=True)`` on mmengine checkpoints) and registers every
component in the point-cloud registries of :mod:`projects.pointcloud.registry`.
"""
from attn_ops.compat import checkpoint as _checkpoint

_checkpoint.install()

from . import point_ops  # noqa: E402,F401
from .registry import DATASETS, METRICS, MODELS, TRANSFORMS  # noqa: E402,F401
from . import models  # noqa: E402,F401
from . import transforms  # noqa: E402,F401
from . import metrics  # noqa: E402,F401
from . import datasets  # noqa: E402,F401
