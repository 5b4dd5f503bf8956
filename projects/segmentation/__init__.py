"""mmsegmentation integration: decode heads over ATTENTION ops and the synthetic demo dataset.

Importing this package (configs do it through ``custom_imports``) first installs the runtime
patches that mmseg needs on this stack (pure-PyTorch ``mmcv.ops`` stand-ins when compiled mmcv
is absent; the checkpoint allowlist for ``torch.load(weights_only=True)``), then registers the
heads and the dataset in mmseg's registries.
"""
from attn_ops.compat import checkpoint as _checkpoint
from attn_ops.compat import mmcv_ops as _mmcv_ops

_mmcv_ops.install()
_checkpoint.install()

from .attn_head import AttnHead  # noqa: E402
from .demo_shapes import DemoShapesDataset  # noqa: E402
from .ea_head import EAHead  # noqa: E402

__all__ = ['AttnHead', 'DemoShapesDataset', 'EAHead']
