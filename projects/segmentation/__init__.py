"""mmsegmentation integration: decode heads over ATTENTION ops and the synthetic demo dataset.

Importing this package (configs do it through ``custom_imports``) registers the heads and the
dataset in mmseg's registries. mmseg imports ``mmcv.ops`` unguarded, so the runtime patches
(:func:`projects.runtime.install_compat`, the one place that installs them) must be in place
before mmseg is imported; this package calls it first.
"""
from ..runtime import install_compat

install_compat()

from .attn_head import AttnHead  # noqa: E402
from .demo_shapes import DemoShapesDataset  # noqa: E402
from .ea_head import EAHead  # noqa: E402

__all__ = ['AttnHead', 'DemoShapesDataset', 'EAHead']
