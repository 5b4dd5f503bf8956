"""EANet's segmentation head (Guo et al., "Beyond Self-attention: External Attention using Two
Linear Layers for Visual Tasks", TPAMI 2022; official code MenghaoGuo/EANet ``model_torch.py``)."""
from __future__ import annotations

from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from .attn_head import AttnBranch


@MODELS.register_module()
class EAHead(BaseDecodeHead):
    """The official EANet head: conv3x3 + norm + ReLU (in -> ``ea_channels``), the external
    attention block, conv3x3 + norm + ReLU (``ea_channels`` -> ``channels``), Dropout2d, 1x1
    classifier.

    As the official head (``fc0`` 2048->512, ``External_attention(512)``, ``fc1`` 512->256,
    ``Dropout2d(0.1)``, ``fc2``): ``ea_channels=512``, ``channels=256``. ``channels`` is the
    classifier's input width, as in every mmseg head; the block's width is its own argument, as
    DAHead's ``pam_channels``.

    Args:
        ea_channels: width of the attention block (official 512).
        attn: ATTENTION config of the block, default ``dict(type='ExternalAttentionBlock', k=64)``;
            its ``dim`` is filled with ``ea_channels``. Any op works; its kind decides the
            identity (see :class:`~projects.segmentation.attn_head.AttnBranch`).
        residual: ``None`` (from the op's kind), ``True`` or ``False``.
        **kwargs: :class:`~mmseg.models.decode_heads.decode_head.BaseDecodeHead` arguments.

    Shapes: inputs[in_index] (B, in_channels, H, W) -> logits (B, num_classes, H, W).
    """

    def __init__(self, ea_channels: int = 512, attn: dict | None = None, residual: bool | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.ea_channels = ea_channels
        attn = dict(type='ExternalAttentionBlock', k=64) if attn is None else attn
        conv = dict(kernel_size=3, padding=1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg)
        self.pre_conv = ConvModule(self.in_channels, ea_channels, **conv)
        self.attn = AttnBranch(attn, ea_channels, self.norm_cfg, residual, 'EAHead')
        self.post_conv = ConvModule(ea_channels, self.channels, **conv)

    def forward(self, inputs):
        x = self._transform_inputs(inputs)
        return self.cls_seg(self.post_conv(self.attn(self.pre_conv(x))))
