"""PCT classification networks (Guo et al., "PCT: Point Cloud Transformer", CVM 2021).

``PCT`` follows the public PCT_Pytorch reimplementation (``model.py``, class ``Pct``) layer by
layer, so its checkpoints convert (``tools/model_converters/pct_pytorch.py``)::

    xyz -> LBR 3->64 -> LBR 64->64                                 (conv1/bn1, conv2/bn2)
        -> neighbour embedding: FPS 512, kNN 32, [f_j - f_c, f_c] -> 2 LBR 128 -> max   (gather_local_0)
                                FPS 256, kNN 32, [f_j - f_c, f_c] -> 2 LBR 256 -> max   (gather_local_1)
        -> LBR 256 -> LBR 256 -> 4 offset-attention layers, outputs concatenated (1024)  (pt_last)
        -> concat the 256 neighbour-embedding features -> LBR 1280->1024, LeakyReLU(0.2)               (conv_fuse)
        -> max pool -> Linear 1024->512 (no bias), BN, LeakyReLU, Dropout 0.5
        -> Linear 512->256, BN, LeakyReLU, Dropout 0.5 -> Linear 256->K

``SimplePCT`` (SPCT) and ``NaivePCT`` (NPCT) replace the neighbour embedding by a point
embedding (2 LBR of 128) and use 128-channel attention layers, offset-attention for SPCT and
naive self-attention (:math:`x + \\mathrm{LBR}(\\mathrm{SA}(x))`) for NPCT, as in the paper.
Any token op of ATTENTION replaces the attention with ``attn=dict(type=...)``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..registry import MODELS
from .base import BasePointModel
from attn_ops import build_attention, op_class
from attn_ops.layouts import masked_apply

from .blocks import AttentionStack, LBR, NeighborEmbeddingStage, masked_max, mlp


@MODELS.register_module()
class PCTClassifier(BasePointModel):
    """The configurable PCT classification network (see the module docstring).

    Args:
        num_classes: K.
        in_channels: input feature width (3 for xyz).
        embed_channels: point embedding widths, e.g. ``(64, 64)``.
        neighbor_stages: ``((S, K, C_out), ...)`` sample-and-group stages; empty for point embedding.
        encoder_mlp: LBR layers before the attention stack (``pt_last.conv1/2``); ``()`` for none.
        num_layers: attention layers; their width is the channel count reaching them.
        attn: ATTENTION config of each layer (channel argument filled in).
        attn_mode: see :class:`~projects.pointcloud.models.blocks.AttentionBlock`.
        concat_input: concatenate the embedding output (input of ``encoder_mlp``) to the attention
            outputs before the fuse layer.
        fuse_channels: width of the fuse layer before max pooling.
        head_channels: widths of the classifier MLP; dropout after each of its layers.
        label_smoothing: PCT-style smoothing of the cross-entropy (0.2 in the recipe).
        pool: ATTENTION config of a ``pool`` op that replaces the max pooling and the classifier MLP,
            e.g. ``dict(type='ResidualAttention')`` (CSRA: class logits straight from the fused point
            features, padding masked); its ``dim`` and ``num_classes`` are filled in.
    """

    def __init__(self, num_classes: int = 40, in_channels: int = 3,
                 embed_channels: Sequence[int] = (64, 64),
                 neighbor_stages: Sequence[Sequence[int]] = ((512, 32, 128), (256, 32, 256)),
                 encoder_mlp: Sequence[int] = (256, 256), num_layers: int = 4,
                 attn: Optional[dict] = None, attn_mode: str = 'auto', concat_input: bool = True,
                 fuse_channels: int = 1024, head_channels: Sequence[int] = (512, 256),
                 dropout: float = 0.5, label_smoothing: float = 0.0, pool: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(in_channels, label_smoothing, data_preprocessor, init_cfg)
        self.num_classes = num_classes
        self.embedding = mlp([in_channels, *embed_channels])
        c = embed_channels[-1]
        self.neighbor_embedding = nn.ModuleList()
        for s, k, c_out in neighbor_stages:
            self.neighbor_embedding.append(NeighborEmbeddingStage(c, c_out, s, k))
            c = c_out
        self.encoder_mlp = mlp([c, *encoder_mlp]) if encoder_mlp else nn.Identity()
        c_embed, c = c, (encoder_mlp[-1] if encoder_mlp else c)
        attn = dict(type='OffsetAttention') if attn is None else dict(attn)
        self.encoder = AttentionStack(c, num_layers, attn, attn_mode)
        self.concat_input = concat_input
        self.fuse = LBR(num_layers * c + (c_embed if concat_input else 0), fuse_channels, act='leaky_relu')
        self.pool, self.head = None, None
        if pool is not None:
            if op_class(pool).kind != 'pool':
                raise ValueError(f'PCTClassifier: pool must be a pool op (points -> class logits), got '
                                 f'{pool["type"]} of kind {op_class(pool).kind!r}')
            self.pool = build_attention(dict(pool, num_classes=pool.get('num_classes', num_classes)),
                                        dim=fuse_channels)
            if self.pool.num_classes != num_classes:
                raise ValueError(f'PCTClassifier: pool config sets num_classes={self.pool.num_classes} but the '
                                 f'model has {num_classes} classes')
        else:
            head, c = [], fuse_channels
            for i, h in enumerate(head_channels):
                head += [nn.Linear(c, h, bias=i > 0), nn.BatchNorm1d(h), nn.LeakyReLU(0.2, inplace=True),
                         nn.Dropout(dropout)]
                c = h
            head.append(nn.Linear(c, num_classes))
            self.head = nn.Sequential(*head)

    def point_features(self, inputs) -> tuple[Tensor, Optional[Tensor]]:
        """Fused per-point features ``(B, N, fuse_channels)`` and their padding mask ``(B, N)``."""
        pos, feat, mask = self.dense_inputs(inputs)
        x = masked_apply(self.embedding, feat, mask)
        for stage in self.neighbor_embedding:
            pos, x, mask = stage(pos, x, mask)
        y = self.encoder(masked_apply(self.encoder_mlp, x, mask), mask, pos)
        if self.concat_input:  # the neighbour-embedding output, before pt_last's own LBRs
            y = torch.cat([y, x], dim=-1)
        return masked_apply(self.fuse, y, mask), mask

    def features(self, inputs) -> Tensor:
        """Global feature ``(B, fuse_channels)`` of each cloud (max pooling)."""
        return masked_max(*self.point_features(inputs))

    def logits(self, inputs) -> Tensor:
        if self.pool is not None:
            y, mask = self.point_features(inputs)
            return self.pool(y, mask=mask)
        return self.head(self.features(inputs))

    def predict(self, inputs, logits: Optional[Tensor] = None) -> list:
        """Per cloud ``dict(pred_label, gt_label, logits)``; ``logits`` ``(B, K)`` precomputed
        (test-time votes) or from :meth:`logits`."""
        logits = self.logits(inputs) if logits is None else logits
        pred = logits.argmax(-1).cpu()
        gt = getattr(inputs, 'y', None) if not isinstance(inputs, Tensor) else None
        return [dict(pred_label=pred[i], gt_label=None if gt is None else gt.view(-1)[i].cpu(),
                     logits=logits[i].detach().cpu()) for i in range(pred.shape[0])]


@MODELS.register_module()
class PCT(PCTClassifier):
    """PCT with neighbour embedding and offset-attention (PCT_Pytorch ``Pct``); 2,876,136
    parameters for 40 classes."""


@MODELS.register_module()
class SimplePCT(PCTClassifier):
    """SPCT: point embedding (2 LBR of 128) + 4 offset-attention layers of 128 channels."""

    def __init__(self, num_classes: int = 40, in_channels: int = 3, **kwargs):
        kwargs.setdefault('embed_channels', (128, 128))
        kwargs.setdefault('neighbor_stages', ())
        kwargs.setdefault('encoder_mlp', ())
        kwargs.setdefault('concat_input', False)
        super().__init__(num_classes, in_channels, **kwargs)


@MODELS.register_module()
class NaivePCT(SimplePCT):
    """NPCT: SPCT with naive self-attention, :math:`x + \\mathrm{LBR}(\\mathrm{SA}(x))`."""

    def __init__(self, num_classes: int = 40, in_channels: int = 3, **kwargs):
        kwargs.setdefault('attn', dict(type='SelfAttention'))
        kwargs.setdefault('attn_mode', 'residual')
        super().__init__(num_classes, in_channels, **kwargs)
