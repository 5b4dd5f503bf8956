"""What every point-cloud network shares: the batch format, the preprocessor, the loss.

Batches are :class:`torch_geometric.data.Batch` objects (``pos`` ``(P, 3)``, optional ``x``
``(P, C)``, ``batch`` ``(P,)``, labels ``y``; built by ``pointcloud_collate``). The Runner
hands ``dict(inputs=Batch, data_samples=None)`` to the model.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from torch import Tensor

from attn_ops.point_ops import to_dense

from ..registry import MODELS


@MODELS.register_module()
class PointDataPreprocessor(BaseDataPreprocessor):
    """Moves a PyG batch (and anything mmengine can cast) to the model's device."""

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        if hasattr(inputs, 'to') and not isinstance(inputs, Tensor):
            inputs = inputs.to(self.device)
        else:
            inputs = self.cast_data(inputs)
        return dict(inputs=inputs, data_samples=data.get('data_samples'))


def smooth_cross_entropy(logits: Tensor, target: Tensor, smoothing: float = 0.0) -> Tensor:
    r"""Cross-entropy with PCT_Pytorch's label smoothing (``cal_loss``):
    target distribution :math:`1-\epsilon` on the label and :math:`\epsilon/(K-1)` elsewhere.

    Shapes: logits ``(M, K)``, target ``(M,)`` long -> scalar mean.
    """
    if smoothing <= 0:
        return F.cross_entropy(logits, target)
    k = logits.shape[-1]
    one_hot = torch.full_like(logits, smoothing / (k - 1))
    one_hot.scatter_(1, target.view(-1, 1), 1.0 - smoothing)
    return -(one_hot * F.log_softmax(logits, dim=1)).sum(1).mean()


class BasePointModel(BaseModel):
    """mmengine model over PyG batches: ``forward(inputs, data_samples=None, mode)``.

    Subclasses implement :meth:`logits` (per cloud ``(B, K)`` or per point ``(P, K)``) and
    :meth:`predict` turns logits into a list of per-sample dicts for the metrics.
    """

    def __init__(self, in_channels: int, label_smoothing: float = 0.0,
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = PointDataPreprocessor()
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.in_channels = in_channels
        self.label_smoothing = label_smoothing

    # -- inputs -------------------------------------------------------------------------
    def dense_inputs(self, data):
        """``(pos (B, N, 3), feat (B, N, C_in), mask (B, N))`` from a batch (or a plain tensor).

        Features are ``data.x`` when present, else the coordinates ``data.pos``.
        A plain tensor ``(B, N, C_in)`` (first 3 channels xyz) is accepted too, unpadded.
        """
        if isinstance(data, Tensor):
            if data.dim() != 3 or data.shape[-1] != self.in_channels:
                raise ValueError(f'{type(self).__name__} expects points (B, N, {self.in_channels}), '
                                 f'got {tuple(data.shape)}')
            return data[..., :3], data, None
        feat = data.x if getattr(data, 'x', None) is not None else data.pos
        if feat.dim() != 2 or feat.shape[-1] != self.in_channels:
            raise ValueError(f'{type(self).__name__} was built with in_channels={self.in_channels} '
                             f'but the batch carries features of shape {tuple(feat.shape)} '
                             f'({"data.x" if getattr(data, "x", None) is not None else "data.pos"})')
        batch = getattr(data, 'batch', None)
        pos, mask = to_dense(data.pos, batch)
        feat, _ = to_dense(feat, batch)
        if bool(mask.all()):
            mask = None
        return pos, feat, mask

    # -- mmengine entry point ---------------------------------------------------------------
    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'tensor':
            return self.logits(inputs)
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.predict(inputs)
        raise ValueError(f'{type(self).__name__}.forward: mode must be loss, predict or tensor, '
                         f'got {mode!r}')

    def loss(self, inputs) -> dict:
        logits = self.logits(inputs)
        target = inputs.y.view(-1).long()
        if target.shape[0] != logits.shape[0]:
            raise ValueError(f'{type(self).__name__}: {logits.shape[0]} predictions but '
                             f'{target.shape[0]} labels in batch.y')
        return dict(loss=smooth_cross_entropy(logits, target, self.label_smoothing))

    def logits(self, inputs) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
