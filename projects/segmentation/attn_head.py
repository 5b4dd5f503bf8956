"""A decode head around any operator of ATTENTION (for ablations), built as mmseg builds NLHead."""
from __future__ import annotations

import inspect

import torch
import torch.nn as nn
from mmseg.models.decode_heads.fcn_head import FCNHead
from mmseg.registry import MODELS

from attn_ops import adds_identity, build_attention, op_class
from attn_ops.layouts import MAP, as_layout
from attn_ops.ops.layers import Scale


def build_map_attention(attn: dict, dim: int, norm_cfg=None) -> nn.Module:
    """Build ``attn`` from ATTENTION for ``dim`` channels and return it on maps (B, C, H, W).

    Token ops get the layout adapter. An op with a ``norm_cfg`` argument inherits the head's
    (SyncBN in the multi-GPU recipes, BN in CPU configs) unless its config sets one.
    """
    if not isinstance(attn, dict) or 'type' not in attn:
        raise TypeError(f'attn must be a config dict with a "type" key, e.g. '
                        f'dict(type="ExternalAttentionBlock"), got {attn!r}')
    cfg = dict(attn)
    if (norm_cfg is not None and 'norm_cfg' not in cfg
            and 'norm_cfg' in inspect.signature(op_class(cfg)).parameters):
        cfg['norm_cfg'] = dict(norm_cfg)
    return as_layout(build_attention(cfg, dim=dim), MAP)


class AttnBranch(nn.Module):
    r"""An op of ATTENTION on maps with the identity its ``kind`` asks for.

    .. math::
        y = \begin{cases} z + \gamma\,\mathrm{op}(z) & \text{attention (}\gamma\text{ learnable, starts at 0)}\\
        \mathrm{op}(z) & \text{block, gate} \end{cases}

    An ``attention`` op starts closed (mmseg's ``Scale(0)`` convention of PAM / CAM / CC), so an
    untrained head equals the same head without it. ``residual=False`` drops the identity of an
    ``attention`` op; ``residual=True`` on a ``block`` or ``gate`` op raises (identity twice).

    Args:
        attn: ATTENTION config; its ``dim`` is filled. dim: channels of ``z``.
        norm_cfg: the head's norm, handed to an op with a ``norm_cfg`` argument.
        residual: ``None`` (from the kind), ``True`` or ``False``. caller: named in errors.

    Shapes: (B, dim, H, W) -> (B, dim, H, W).
    """

    def __init__(self, attn: dict, dim: int, norm_cfg=None, residual: bool | None = None,
                 caller: str = 'AttnBranch'):
        super().__init__()
        self.op = build_map_attention(attn, dim, norm_cfg)
        self.gamma = Scale(0.0) if adds_identity(self.op, residual, caller) else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.op(z)
        return z + self.gamma(y) if self.gamma is not None else y


@MODELS.register_module()
class AttnHead(FCNHead):
    r"""mmseg's ``NLHead`` with its non-local block replaced by any op of ATTENTION.

    ``convs[0]`` (3x3 conv + norm + act, in -> ``channels``) -> :class:`AttnBranch` (the op with the
    identity its kind asks for; token ops through the layout adapter) -> ``convs[1]`` (3x3 conv +
    norm + act) -> FCNHead's ``conv_cat`` when ``concat_input`` -> classifier. An untrained head
    with an ``attention`` op equals the FCN head it extends (the op starts behind ``Scale(0)``).

    Args:
        attn: ATTENTION config; its ``dim`` is filled with ``channels``.
        residual: ``None`` (from the op's kind), ``True`` or ``False``.
        **kwargs: :class:`~mmseg.models.decode_heads.FCNHead` arguments (``num_convs`` is 2;
            ``concat_input`` defaults to True as FCNHead's).

    Shapes: inputs[in_index] (B, in_channels, H, W) -> logits (B, num_classes, H, W).
    """

    def __init__(self, attn: dict, residual: bool | None = None, **kwargs):
        if kwargs.pop('num_convs', 2) != 2:
            raise ValueError('AttnHead: num_convs is fixed at 2 (conv, op, conv), as NLHead')
        super().__init__(num_convs=2, **kwargs)
        self.attn = AttnBranch(attn, self.channels, self.norm_cfg, residual, 'AttnHead')

    def forward(self, inputs):
        x = self._transform_inputs(inputs)
        out = self.convs[1](self.attn(self.convs[0](x)))
        if self.concat_input:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)
