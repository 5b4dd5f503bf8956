"""PCT segmentation networks (PCT paper, Sec. 4 "Segmentation"), part and semantic.

::

    features -> LBR C_in->128 -> LBR 128->128 -> 4 attention layers (128), concatenated (512)
             -> LBR 512->1024 -> global max and mean over the cloud (2 x 1024)
             [-> + category one-hot (16) -> LBR 16->64]                      (part segmentation)
             -> every point: [point feature 1024, global 2048 (+64)]
             -> LBR ->512, Dropout 0.5 -> LBR 512->256 -> Linear 256->K    (point-wise scores)

Part segmentation restricts the prediction of a shape to the parts of its category
(``category_parts``), as the ShapeNetPart protocol does. Semantic segmentation of a whole room
accumulates the scores of overlapping blocks per room point (votes) when the batch carries
``point_idx`` / ``room_size`` (see :class:`~projects.pointcloud.datasets.S3DISDataset`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from ..datasets import resolve_category_parts
from ..registry import MODELS
from .base import BasePointModel
from attn_ops.layouts import masked_apply

from .blocks import AttentionStack, LBR, masked_max, masked_mean, mlp


@MODELS.register_module()
class PCTSegmentor(BasePointModel):
    """Point-wise PCT segmentation network (see module docstring).

    Args:
        num_classes: K point classes (50 parts, 13 S3DIS classes).
        in_channels: input width (3 xyz, 6 xyz+normal, 9 for S3DIS blocks).
        num_categories: size of the category one-hot (16 for ShapeNetPart, 0 for none).
        category_parts: per category, the list of its part ids (or a dataset name such as
            ``'ShapeNetPart'``); restricts predictions to the shape's category.
        embed_channels, num_layers, attn, attn_mode, fuse_channels: as :class:`PCTClassifier`.
        category_channels: width of the category embedding.
        head_channels: widths of the point-wise MLP; dropout after the first.
        vote_chunk: blocks per forward pass in whole-room evaluation.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, num_categories: int = 0,
                 category_parts: Optional[Sequence[Sequence[int]]] = None,
                 embed_channels: Sequence[int] = (128, 128), num_layers: int = 4,
                 attn: Optional[dict] = None, attn_mode: str = 'auto', fuse_channels: int = 1024,
                 category_channels: int = 64, head_channels: Sequence[int] = (512, 256),
                 dropout: float = 0.5, label_smoothing: float = 0.0, vote_chunk: int = 16,
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        super().__init__(in_channels, label_smoothing, data_preprocessor, init_cfg)
        self.num_classes, self.num_categories, self.vote_chunk = num_classes, num_categories, vote_chunk
        self.embedding = mlp([in_channels, *embed_channels])
        c = embed_channels[-1]
        attn = dict(type='OffsetAttention') if attn is None else dict(attn)
        self.encoder = AttentionStack(c, num_layers, attn, attn_mode)
        self.fuse = LBR(num_layers * c, fuse_channels)
        c_global = 2 * fuse_channels
        if num_categories:
            self.category_embedding = LBR(num_categories, category_channels)
            c_global += category_channels
        c = fuse_channels + c_global
        layers = []
        for i, h in enumerate(head_channels):
            layers.append(LBR(c, h))
            if i == 0 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            c = h
        layers.append(nn.Linear(c, num_classes))
        self.head = nn.Sequential(*layers)
        category_parts = resolve_category_parts(category_parts)
        if category_parts is not None:
            allowed = torch.zeros(len(category_parts), num_classes, dtype=torch.bool)
            for cat, parts in enumerate(category_parts):
                allowed[cat, list(parts)] = True
            self.register_buffer('allowed_parts', allowed, persistent=False)
        else:
            self.allowed_parts = None

    def _category(self, inputs, batch_size: int, device) -> Tensor:
        cat = getattr(inputs, 'category', None)
        if cat is None:
            raise ValueError(f'{type(self).__name__} with num_categories={self.num_categories} needs '
                             f'batch.category (one id per cloud); the batch has none')
        cat = cat.view(-1).long().to(device)
        if cat.shape[0] != batch_size:
            raise ValueError(f'{type(self).__name__}: batch.category has {cat.shape[0]} entries for '
                             f'{batch_size} clouds')
        return F.one_hot(cat, self.num_categories).float()

    def dense_logits(self, inputs):
        """Scores ``(B, N, K)`` and the padding mask ``(B, N)`` (None when dense)."""
        pos, feat, mask = self.dense_inputs(inputs)
        b, n, _ = feat.shape
        x = masked_apply(self.embedding, feat, mask)
        x = masked_apply(self.fuse, self.encoder(x, mask, pos), mask)
        glob = [masked_max(x, mask), masked_mean(x, mask)]
        if self.num_categories:
            glob.append(self.category_embedding(self._category(inputs, b, x.device)))
        glob = torch.cat(glob, -1).unsqueeze(1).expand(-1, n, -1)
        return masked_apply(self.head, torch.cat([x, glob], -1), mask), mask

    def logits(self, inputs) -> Tensor:
        """Point scores in the order of the batch's points: ``(P, K)`` (``(B, N, K)`` for a tensor)."""
        scores, mask = self.dense_logits(inputs)
        if isinstance(inputs, Tensor):
            return scores
        return scores.reshape(-1, scores.shape[-1]) if mask is None else scores[mask]

    def _restrict(self, scores: Tensor, category: Optional[Tensor]) -> Tensor:
        if self.allowed_parts is None or category is None:
            return scores
        allowed = self.allowed_parts[category.long()]
        return scores.masked_fill(~allowed, float('-inf'))

    def predict(self, inputs, logits: Optional[Tensor] = None) -> list:
        """Per cloud ``dict(pred, gt[, category])``; ``logits`` ``(P, K)`` precomputed (test-time
        votes) or from :meth:`logits`."""
        if getattr(inputs, 'point_idx', None) is not None:
            return self._predict_rooms(inputs)
        scores = self.logits(inputs) if logits is None else logits
        batch = inputs.batch if inputs.batch is not None else scores.new_zeros(
            scores.shape[0], dtype=torch.long)
        cats = getattr(inputs, 'category', None)
        if cats is not None:
            scores = self._restrict(scores, cats.view(-1)[batch])
        pred = scores.argmax(-1).cpu()
        y = inputs.y.view(-1).cpu() if getattr(inputs, 'y', None) is not None else None
        batch = batch.cpu()
        out = []
        for i in range(int(batch.max()) + 1 if batch.numel() else 0):
            sel = batch == i
            sample = dict(pred=pred[sel], gt=None if y is None else y[sel])
            if cats is not None:
                sample['category'] = int(cats.view(-1)[i])
            out.append(sample)
        return out

    @torch.no_grad()
    def _predict_rooms(self, inputs) -> list:
        """Whole-room prediction: softmax scores of all blocks summed per room point, then argmax.

        Batch fields: ``x``/``pos`` of all blocks of all rooms, ``batch`` (room id),
        ``block`` (block id within its room), ``point_idx`` (index of each block point in its
        room), ``room_size`` (points per room), ``y`` (labels of every room point).
        """
        rooms = inputs.batch
        num_rooms = int(rooms.max()) + 1
        sizes = inputs.room_size.view(-1).long()
        offsets = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
        key = rooms * (int(inputs.block.max()) + 1) + inputs.block
        _, block_of_point = torch.unique_consecutive(key, return_inverse=True)
        num_blocks = int(block_of_point.max()) + 1
        feat = inputs.x if inputs.x is not None else inputs.pos
        votes = feat.new_zeros(int(offsets[-1]), self.num_classes)
        target = offsets[rooms] + inputs.point_idx.long()
        for start in range(0, num_blocks, self.vote_chunk):
            sel = (block_of_point >= start) & (block_of_point < start + self.vote_chunk)
            chunk = Data(pos=inputs.pos[sel], x=feat[sel], batch=block_of_point[sel] - start)
            votes.index_add_(0, target[sel], self.logits(chunk).softmax(-1))
        pred = votes.argmax(-1).cpu()
        y = inputs.y.view(-1).cpu()
        return [dict(pred=pred[offsets[r]:offsets[r + 1]], gt=y[offsets[r]:offsets[r + 1]])
                for r in range(num_rooms)]


@MODELS.register_module()
class PCTPartSeg(PCTSegmentor):
    """PCT part segmentation: ShapeNetPart defaults (50 parts, 16 categories)."""

    def __init__(self, num_classes: int = 50, in_channels: int = 3, num_categories: int = 16, **kwargs):
        super().__init__(num_classes, in_channels, num_categories, **kwargs)


@MODELS.register_module()
class PCTSemSeg(PCTSegmentor):
    """PCT semantic segmentation: S3DIS defaults (13 classes, 9 input channels)."""

    def __init__(self, num_classes: int = 13, in_channels: int = 9, **kwargs):
        kwargs.setdefault('num_categories', 0)
        super().__init__(num_classes, in_channels, **kwargs)
