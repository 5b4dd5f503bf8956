"""Independent, written-out formulas of each op (the slow reference the fast paths are tested on).

Written from the papers' equations with explicit exp / sum and explicit axes, never calling the
library's code paths, so a wrong normalisation axis or a missing term shows up as a mismatch.
"""
import math

import torch


def softmax(x, dim):
    e = torch.exp(x - x.max(dim=dim, keepdim=True).values)
    return e / e.sum(dim=dim, keepdim=True)


def external_attention(x, mk, mv, mask=None):
    """x (B,N,C); mk (S,C); mv (C,S). softmax over tokens N, then L1 over units S."""
    logits = torch.einsum('bnc,sc->bns', x, mk)
    if mask is not None:  # drop padded tokens from every per-unit softmax
        logits = logits.masked_fill(~mask[:, :, None], -math.inf)
    a = softmax(logits, dim=1)
    a = a / a.sum(dim=2, keepdim=True)
    out = torch.einsum('bns,cs->bnc', a, mv)
    if mask is not None:
        out = torch.where(mask[:, :, None], out, torch.zeros_like(out))
    return out


def batch_norm_eval(x, bn, channel_dim=1):
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def external_attention_block(x, blk):
    """The official EANet block in eval mode (BN with running statistics)."""
    b, c, h, w = x.shape
    f = torch.einsum('oc,bchw->bohw', blk.conv1.weight[:, :, 0, 0], x) + blk.conv1.bias.view(1, -1, 1, 1)
    f = f.reshape(b, c, h * w)
    logits = torch.einsum('kc,bcn->bkn', blk.linear_0.weight[:, :, 0], f)
    a = softmax(logits, dim=2)                      # over the N positions
    a = a / (1e-9 + a.sum(dim=1, keepdim=True))     # L1 over the k units
    y = torch.einsum('ck,bkn->bcn', blk.linear_1.weight[:, :, 0], a).reshape(b, c, h, w)
    y = torch.einsum('oc,bchw->bohw', blk.conv2.weight[:, :, 0, 0], y)
    y = batch_norm_eval(y, blk.norm)
    return torch.clamp(y + x, min=0)


def multi_head_external(x, op, mask=None):
    b, n, c = x.shape
    hdim = c * op.coef // op.num_heads
    t = x @ op.trans_dims.weight.T + op.trans_dims.bias
    outs = []
    for h in range(op.num_heads):
        th = t[:, :, h * hdim:(h + 1) * hdim]                              # (B, N, d)
        logits = th @ op.linear_0.weight.T + op.linear_0.bias              # (B, N, k)
        if mask is not None:
            logits = logits.masked_fill(~mask[:, :, None], -math.inf)
        a = softmax(logits, dim=1)                                          # over tokens
        a = a / (1e-9 + a.sum(dim=2, keepdim=True))                         # over units
        if mask is not None:
            a = torch.where(mask[:, :, None], a, torch.zeros_like(a))
        outs.append(a @ op.linear_1.weight.T + op.linear_1.bias)
    out = torch.cat(outs, dim=-1) @ op.proj.weight.T + op.proj.bias
    if mask is not None:
        out = torch.where(mask[:, :, None], out, torch.zeros_like(out))
    return out


def outlook_attention(x, op):
    """VOLO outlook attention written with explicit loops over window centres. x (B,C,H,W)."""
    b, c, hgt, wid = x.shape
    k, p, s, heads = op.kernel_size, op.padding, op.stride, op.num_heads
    d = c // heads
    v = torch.einsum('oc,bchw->bohw', op.v.weight, x)
    if op.v.bias is not None:
        v = v + op.v.bias.view(1, -1, 1, 1)
    vpad = torch.nn.functional.pad(v, (p, p, p, p))
    hp, wp = math.ceil(hgt / s), math.ceil(wid / s)
    acc = torch.zeros(b, c, hgt + 2 * p, wid + 2 * p, dtype=x.dtype)
    for i in range(hp):
        for j in range(wp):
            cell = x[:, :, i * s:(i + 1) * s, j * s:(j + 1) * s]
            centre = cell.mean(dim=(2, 3))                                      # ceil-mode average
            logits = centre @ op.attn.weight.T + op.attn.bias                  # (B, heads*k^4)
            logits = logits.view(b, heads, k * k, k * k) * d ** -0.5
            a = softmax(logits, dim=-1)                                         # over source positions
            win = vpad[:, :, i * s:i * s + k, j * s:j * s + k].reshape(b, heads, d, k * k)
            out = torch.einsum('bhts,bhds->bhdt', a, win).reshape(b, c, k, k)  # to target positions
            acc[:, :, i * s:i * s + k, j * s:j * s + k] += out
    y = acc[:, :, p:p + hgt, p:p + wid]
    return torch.einsum('oc,bchw->bohw', op.proj.weight, y) + op.proj.bias.view(1, -1, 1, 1)


def dot_product_attention(q, k, v, key_mask=None):
    """q (B,h,N,d), k/v (B,h,M,d): softmax over keys of q k^T / sqrt(d)."""
    logits = torch.einsum('bhnd,bhmd->bhnm', q, k) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[:, None, None, :], -math.inf)
    return torch.einsum('bhnm,bhmd->bhnd', softmax(logits, dim=-1), v)


def multi_head_attention(x, op, mask=None):
    b, n, c = x.shape
    h = op.num_heads
    wq, wk, wv = op.qkv.weight.chunk(3, dim=0)
    bq, bk, bv = op.qkv.bias.chunk(3) if op.qkv.bias is not None else (0, 0, 0)
    split = lambda t: t.view(b, n, h, c // h).permute(0, 2, 1, 3)  # noqa: E731
    q, k, v = split(x @ wq.T + bq), split(x @ wk.T + bk), split(x @ wv.T + bv)
    out = dot_product_attention(q, k, v, mask).permute(0, 2, 1, 3).reshape(b, n, c)
    out = out @ op.proj.weight.T + op.proj.bias
    if mask is not None:
        out = torch.where(mask[:, :, None], out, torch.zeros_like(out))
    return out


def cross_attention(x, ctx, op, ctx_mask=None):
    b, n, c = x.shape
    m, h = ctx.shape[1], op.num_heads
    wk, wv = op.kv.weight.chunk(2, dim=0)
    q = (x @ op.q.weight.T).view(b, n, h, c // h).permute(0, 2, 1, 3)
    k = (ctx @ wk.T).view(b, m, h, c // h).permute(0, 2, 1, 3)
    v = (ctx @ wv.T).view(b, m, h, c // h).permute(0, 2, 1, 3)
    out = dot_product_attention(q, k, v, ctx_mask).permute(0, 2, 1, 3).reshape(b, n, c)
    return out @ op.proj.weight.T + op.proj.bias


def offset_attention(x, op, mask=None):
    """PCT SA layer in eval mode, written in PCT's (B, C, N) convention with explicit axes."""
    xc = x.transpose(1, 2)                                              # (B, C, N)
    q = torch.einsum('oc,bcn->bon', op.qk.weight, xc)                   # (B, C/4, N)
    energy = torch.einsum('boi,boj->bij', q, q)                         # rows i queries, cols j keys
    if mask is not None:
        energy = energy.masked_fill(~mask[:, None, :], -math.inf)
    a = softmax(energy, dim=2)                                          # over keys j
    if mask is not None:
        a = torch.where(mask[:, :, None], a, torch.zeros_like(a))
    a = a / (1e-9 + a.sum(dim=1, keepdim=True))                         # L1 over queries i
    v = torch.einsum('oc,bcn->bon', op.v.weight, xc) + op.v.bias.view(1, -1, 1)
    x_r = torch.einsum('bci,bij->bcj', v, a)
    t = torch.einsum('oc,bcn->bon', op.trans.weight, xc - x_r) + op.trans.bias.view(1, -1, 1)
    y = xc + torch.clamp(batch_norm_eval(t, op.norm), min=0)
    y = y.transpose(1, 2)
    if mask is not None:
        y = torch.where(mask[:, :, None], y, torch.zeros_like(y))
    return y
