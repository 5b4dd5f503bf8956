"""Convert a PCT_Pytorch checkpoint (state dict of ``nn.DataParallel(Pct)``) to our ``PCT``.

Usage::

    python tools/model_converters/pct_pytorch.py model.t7 pct_modelnet40.pth

The output holds ``dict(state_dict=..., meta=...)`` for ``load_from=`` / ``tools/test.py``.
Conv1d weights ``(C_out, C_in, 1)`` become Linear weights ``(C_out, C_in)``; the tied
``q_conv``/``k_conv`` weight of each SA layer becomes the one ``qk`` weight of OffsetAttention.
The checkpoint is read with ``weights_only=True`` (tensors only, no pickled code).
"""
from __future__ import annotations

import argparse
import re
from collections import OrderedDict

import torch

_BN = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')

# reference prefix -> our prefix (for conv/linear weights and batch norms)
_RULES = [
    (r'conv1\.', 'embedding.0.linear.'), (r'bn1\.', 'embedding.0.norm.'),
    (r'conv2\.', 'embedding.1.linear.'), (r'bn2\.', 'embedding.1.norm.'),
    (r'gather_local_(\d)\.conv1\.', r'neighbor_embedding.\1.mlp.0.linear.'),
    (r'gather_local_(\d)\.bn1\.', r'neighbor_embedding.\1.mlp.0.norm.'),
    (r'gather_local_(\d)\.conv2\.', r'neighbor_embedding.\1.mlp.1.linear.'),
    (r'gather_local_(\d)\.bn2\.', r'neighbor_embedding.\1.mlp.1.norm.'),
    (r'pt_last\.conv1\.', 'encoder_mlp.0.linear.'), (r'pt_last\.bn1\.', 'encoder_mlp.0.norm.'),
    (r'pt_last\.conv2\.', 'encoder_mlp.1.linear.'), (r'pt_last\.bn2\.', 'encoder_mlp.1.norm.'),
    (r'pt_last\.sa(\d)\.q_conv\.', 'encoder.layers.{sa}.attn.qk.'),
    (r'pt_last\.sa(\d)\.v_conv\.', 'encoder.layers.{sa}.attn.v.'),
    (r'pt_last\.sa(\d)\.trans_conv\.', 'encoder.layers.{sa}.attn.trans.'),
    (r'pt_last\.sa(\d)\.after_norm\.', 'encoder.layers.{sa}.attn.norm.'),
    (r'conv_fuse\.0\.', 'fuse.linear.'), (r'conv_fuse\.1\.', 'fuse.norm.'),
    (r'linear1\.', 'head.0.'), (r'bn6\.', 'head.1.'),
    (r'linear2\.', 'head.4.'), (r'bn7\.', 'head.5.'),
    (r'linear3\.', 'head.8.'),
]


def _rename(key: str) -> str:
    for pattern, target in _RULES:
        m = re.match(pattern, key)
        if m:
            if '{sa}' in target:
                target = target.format(sa=int(m.group(1)) - 1)
            else:
                target = m.expand(target)
            return target + key[m.end():]
    raise KeyError(f'pct_pytorch converter: unexpected key "{key}" in the checkpoint '
                   f'(not part of PCT_Pytorch Pct)')


def convert_pct_pytorch(state_dict: dict) -> 'OrderedDict[str, torch.Tensor]':
    """Map a PCT_Pytorch ``Pct`` state dict (with or without the ``module.`` prefix) to ``PCT``."""
    out = OrderedDict()
    sd = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}
    for key, value in sd.items():
        m = re.match(r'pt_last\.sa(\d)\.k_conv\.weight', key)
        if m:  # tied to q_conv in the reference
            q = sd.get(f'pt_last.sa{m.group(1)}.q_conv.weight')
            if q is None or not torch.equal(q, value):
                raise ValueError(f'pct_pytorch converter: {key} differs from its q_conv weight; '
                                 f'PCT shares one q/k projection per SA layer')
            continue
        if value.dim() == 3 and value.shape[-1] == 1:
            value = value[..., 0]
        out[_rename(key)] = value
    return out


def load_pct_pytorch(path: str) -> 'OrderedDict[str, torch.Tensor]':
    """Read a PCT_Pytorch checkpoint with ``weights_only=True`` and convert it."""
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(ckpt, dict) and 'model_state_dict' in ckpt:
        ckpt = ckpt['model_state_dict']
    elif isinstance(ckpt, dict) and 'state_dict' in ckpt:
        ckpt = ckpt['state_dict']
    return convert_pct_pytorch(ckpt)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Convert a PCT_Pytorch checkpoint to attn_ops PCT')
    parser.add_argument('src', help='PCT_Pytorch checkpoint (state dict of DataParallel(Pct))')
    parser.add_argument('dst', help='output .pth for load_from / tools/test.py')
    args = parser.parse_args(argv)
    state_dict = load_pct_pytorch(args.src)
    torch.save(dict(state_dict=state_dict, meta=dict(converted_from=args.src)), args.dst)
    print(f'converted {len(state_dict)} tensors: {args.src} -> {args.dst}')


if __name__ == '__main__':
    main()
