"""What every op of the library shares: its declared layout, channel argument and input checks."""
from __future__ import annotations

from typing import ClassVar, Optional

from torch import Tensor, nn

from ..layouts import MAP, TOKENS, check_map, check_mask, check_tokens, op_channels


class AttentionOp(nn.Module):
    """Base of every registered op.

    Class attributes describe the op for adapters, heads, networks and the op table:

    ``layout``        ``'tokens'`` (B, N, C) or ``'map'`` (B, C, H, W): the native input layout.
    ``dim_arg``       name of the constructor argument that sets the channel count.
    ``supports_mask`` whether ``forward`` takes a (B, N) padding mask.
    ``paper``         short citation; ``complexity`` time in the number of tokens N.
    """

    layout: ClassVar[str] = TOKENS
    dim_arg: ClassVar[str] = 'dim'
    supports_mask: ClassVar[bool] = False
    paper: ClassVar[str] = ''
    complexity: ClassVar[str] = ''

    @property
    def channels_in(self) -> int:
        return op_channels(self)

    def check_input(self, x: Tensor, mask: Optional[Tensor] = None) -> None:
        """Validate ``x`` (and ``mask``) against the declared layout; raise ``ValueError`` if not."""
        if self.layout == MAP:
            check_map(self, x, self.channels_in)
        else:
            check_tokens(self, x, self.channels_in)
            check_mask(self, mask, x.shape[0], x.shape[1])

    def extra_repr(self) -> str:
        return f'{self.dim_arg}={self.channels_in}, layout={self.layout}'
