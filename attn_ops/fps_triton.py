"""Farthest point sampling as one Triton kernel: the GPU path of :mod:`attn_ops.point_ops`.

One program per cloud keeps the cloud's running distances in registers and loops over the
samples inside the kernel, so a call launches one kernel instead of several per sample. The
arithmetic is the reference loop's (squared differences added in coordinate order, no fused
multiply-add, first index on ties), so the indices equal it. Imported only when triton is;
:func:`attn_ops.point_ops.farthest_point_sample` picks it for CUDA tensors.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

#: largest cloud one program holds in registers; larger clouds use the PyTorch loop.
MAX_POINTS = 16384


@triton.jit
def _fps_kernel(pos_ptr, mask_ptr, out_ptr, n, s, D: tl.constexpr, HAS_MASK: tl.constexpr,
                BLOCK: tl.constexpr):
    cloud = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    inside = offs < n
    points = pos_ptr + cloud * n * D
    # lanes past n are never picked (-inf); padded points only once the real ones are exhausted (-1)
    min_dist = tl.where(inside, float('inf'), float('-inf')).to(pos_ptr.dtype.element_ty)
    if HAS_MASK:
        real = tl.load(mask_ptr + cloud * n + offs, mask=inside, other=0) != 0
        min_dist = tl.where(inside & ~real, -1.0, min_dist).to(pos_ptr.dtype.element_ty)
    tl.store(out_ptr + cloud * s, 0)
    last = tl.program_id(0) * 0
    for t in range(1, s):
        for c in tl.static_range(D):
            diff = tl.load(points + offs * D + c, mask=inside, other=0.0) - tl.load(points + last * D + c)
            if c == 0:
                dist = diff * diff
            else:
                dist = dist + diff * diff
        min_dist = tl.minimum(min_dist, dist)
        last = tl.argmax(min_dist, 0, tie_break_left=True)
        tl.store(out_ptr + cloud * s + t, last.to(tl.int64))


def farthest_point_sample_triton(pos: Tensor, num_samples: int, mask: Optional[Tensor] = None) -> Tensor:
    """``(B, N, D)`` float32/float64 on CUDA (N <= :data:`MAX_POINTS`) -> ``(B, S)`` long."""
    b, n, d = pos.shape
    if n > MAX_POINTS:
        raise ValueError(f'farthest_point_sample_triton holds at most {MAX_POINTS} points per cloud, got N={n}')
    pos = pos.detach().contiguous()
    out = torch.empty(b, num_samples, dtype=torch.long, device=pos.device)
    flags = mask.contiguous().view(torch.uint8) if mask is not None else pos
    block = triton.next_power_of_2(n)
    _fps_kernel[(b,)](pos, flags, out, n, num_samples, D=d, HAS_MASK=mask is not None, BLOCK=block,
                      num_warps=min(16, max(4, block // 256)), enable_fp_fusion=False)
    return out
