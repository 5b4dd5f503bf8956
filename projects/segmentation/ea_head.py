"""EANet's segmentation head (Guo et al., "Beyond Self-attention: External Attention using Two
Linear Layers for Visual Tasks", TPAMI 2022; official code MenghaoGuo/EANet ``model_torch.py``)."""
from __future__ import annotations

import inspect

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from attn_ops import ATTENTION, build_attention
from attn_ops.layouts import MAP, as_layout


def build_map_attention(attn: dict, channels: int, norm_cfg=None) -> nn.Module:
    """Build ``attn`` from ATTENTION for ``channels`` and return it on maps (B, C, H, W).

    Token ops get the layout adapter; an op taking ``norm_cfg`` inherits the head's when its
    config does not set one (SyncBN in multi-GPU recipes, BN in CPU configs).
    """
    if not isinstance(attn, dict) or 'type' not in attn:
        raise TypeError(f'attn must be a config dict with a "type" key, e.g. '
                        f'dict(type="ExternalAttentionBlock"), got {attn!r}')
    cfg = dict(attn)
    op_cls = ATTENTION.get(cfg['type']) if isinstance(cfg['type'], str) else cfg['type']
    if (norm_cfg is not None and op_cls is not None and 'norm_cfg' not in cfg
            and 'norm_cfg' in inspect.signature(op_cls).parameters):
        norm_type = str(norm_cfg.get('type', ''))
        # 1d token ops keep their own default norm (BN1d); only 2d map ops take the head's
        if getattr(op_cls, 'layout', None) == MAP and not norm_type.endswith('1d'):
            cfg['norm_cfg'] = dict(norm_cfg)
    return as_layout(build_attention(cfg, dim=channels), MAP)


@MODELS.register_module()
class EAHead(BaseDecodeHead):
    """The official EANet head: conv3x3 + norm + ReLU (in -> ``channels``), the external attention
    block, conv3x3 + norm + ReLU (``channels`` -> ``channels // 2``), dropout, 1x1 classifier.

    As in the official head (``fc0`` 2048->512, ``External_attention(512)``, ``fc1`` 512->256 with
    ``Dropout2d(0.1)``, ``fc2``), the last conv halves the width, so the classifier sees
    ``channels // 2`` channels (set ``halve_last=False`` to keep ``channels``).

    Args:
        attn: ATTENTION config of the block, default ``dict(type='ExternalAttentionBlock', k=64)``;
            its channel argument is filled with ``channels``.
        halve_last: whether the conv after the attention halves the width (official: True).
        **kwargs: :class:`~mmseg.models.decode_heads.decode_head.BaseDecodeHead` arguments.

    Shapes: inputs[in_index] (B, in_channels, H, W) -> logits (B, num_classes, H, W).
    """

    def __init__(self, attn: dict | None = None, halve_last: bool = True, **kwargs):
        super().__init__(**kwargs)
        attn = dict(type='ExternalAttentionBlock', k=64) if attn is None else attn
        out_width = self.channels // 2 if halve_last else self.channels
        conv = dict(kernel_size=3, padding=1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg)
        self.pre_conv = ConvModule(self.in_channels, self.channels, **conv)
        self.attn = build_map_attention(attn, self.channels, self.norm_cfg)
        self.post_conv = ConvModule(self.channels, out_width, **conv)
        # the classifier reads the post-attention width
        self.conv_seg = nn.Conv2d(out_width, self.out_channels, kernel_size=1)

    def forward(self, inputs):
        x = self._transform_inputs(inputs)
        x = self.post_conv(self.attn(self.pre_conv(x)))
        return self.cls_seg(x)
