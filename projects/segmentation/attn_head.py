"""A generic FCN-style decode head around any operator of ATTENTION, for ablations."""
from __future__ import annotations

import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from .ea_head import build_map_attention


@MODELS.register_module()
class AttnHead(BaseDecodeHead):
    r"""conv3x3 + norm + act (in -> ``channels``), one attention op, conv3x3 + norm + act, classifier.

    ``attn=dict(type=..., ...)`` names any op of ATTENTION; its channel argument is filled with
    ``channels`` and token ops run on the map through the layout adapter
    (``(B, C, H, W) -> (B, HW, C) -> op -> (B, C, H, W)``).

    .. math:: y = \mathrm{conv}_2\big(z + \mathrm{attn}(z)\big),\quad z = \mathrm{conv}_1(x)

    with the residual ``z +`` only when ``residual=True`` (default; ops that already end with a
    residual, such as ``ExternalAttentionBlock`` and ``CrissCrossAttention``, are usually given
    ``residual=False``). With ``concat_input=True`` the head's input is concatenated before the
    last conv, as in mmseg's ``FCNHead``.

    Args:
        attn: ATTENTION config.
        residual: add the op's input to its output.
        concat_input: concatenate the head input before the last conv.
        kernel_size: of both convs.
        **kwargs: :class:`~mmseg.models.decode_heads.decode_head.BaseDecodeHead` arguments.

    Shapes: inputs[in_index] (B, in_channels, H, W) -> logits (B, num_classes, H, W).
    """

    def __init__(self, attn: dict, residual: bool = True, concat_input: bool = False,
                 kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.residual, self.concat_input = residual, concat_input
        conv = dict(kernel_size=kernel_size, padding=kernel_size // 2, conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.pre_conv = ConvModule(self.in_channels, self.channels, **conv)
        self.attn = build_map_attention(attn, self.channels, self.norm_cfg)
        post_in = self.channels + (self.in_channels if concat_input else 0)
        self.post_conv = ConvModule(post_in, self.channels, **conv)

    def forward(self, inputs):
        x = self._transform_inputs(inputs)
        z = self.pre_conv(x)
        y = self.attn(z)
        if self.residual:
            y = y + z
        if self.concat_input:
            y = torch.cat([x, y], dim=1)
        return self.cls_seg(self.post_conv(y))
