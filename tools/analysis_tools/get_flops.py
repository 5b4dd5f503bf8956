"""Parameters and FLOPs of a config's whole model (segmentation or point clouds).

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W | --shape N] [--table]
                                             [--cfg-options key=value ...]

The counter is mmengine's ``FlopAnalyzer`` (fvcore's jit-trace counter, as mmseg's
``get_flops.py``), with one rule added: ``aten::scaled_dot_product_attention`` (fused
attention is otherwise skipped). Its convention is fvcore's: one fused multiply-add counts as one
FLOP, so the figures are multiply-adds (``torch.utils.flop_counter`` reports twice as many).
Operators without a rule are listed after the totals, so nothing goes uncounted silently.

* Segmentation (mmseg segmentors): one random image ``(3, H, W)`` through the data
  preprocessor and the inference path (backbone, neck, decode head; the auxiliary head is
  training-only and left out, as mmseg's tool does). ``--shape`` defaults to the config's
  ``crop_size``.
* Point clouds: one random cloud of N points (``--shape N``, default the config's
  ``num_points``) with the network's input channels (and category 0 for part segmentation)
  through ``logits``. Sampling and neighbour search (FPS, kNN) have no FLOP rule: they are listed.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections import Counter

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from torch import nn  # noqa: E402


def sdpa_flop_jit(inputs, outputs) -> int:
    """Multiply-adds of ``scaled_dot_product_attention(q, k, v)``: q (..., L, E), k (..., S, E),
    v (..., S, Ev) -> L*S*E for the scores plus L*S*Ev for the weighted sum, per leading index."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    (length, e), s, ev = q[-2:], k[-2], v[-1]
    return batch * length * s * (e + ev)


def count(model: nn.Module, inputs: tuple) -> dict:
    """``dict(flops, params, not_counted)`` of ``model(*inputs)`` (flops = multiply-adds;
    ``not_counted``: op name -> calls without a FLOP rule)."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    flops = analyzer.total()
    return dict(flops=int(flops), params=int(parameter_count(model)['']),
                not_counted=dict(Counter(analyzer.unsupported_ops())), analyzer=analyzer)


class PointCloudForward(nn.Module):
    """A point-cloud network as ``f(pos (N, 3), feat (N, C) or None) -> scores``, one cloud, for
    jit tracing (the networks take PyG batches)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pos: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        from torch_geometric.data import Batch
        data = Batch(pos=pos, x=None if feat.shape[-1] == 0 else feat,
                     batch=torch.zeros(pos.shape[0], dtype=torch.long))
        if getattr(self.model, 'num_categories', 0):
            data.category = torch.zeros(1, dtype=torch.long)
        return self.model.logits(data)


def point_inputs(model: nn.Module, num_points: int) -> tuple:
    """A random cloud in the unit cube and the features the network reads (xyz first)."""
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(num_points, 3, generator=g) * 2 - 1
    c = model.in_channels
    feat = torch.zeros(num_points, 0) if c == 3 else torch.cat(
        [pos, torch.rand(num_points, c - 3, generator=g)], 1)
    return pos, feat


def image_inputs(model: nn.Module, shape: tuple) -> tuple:
    """One random image ``(3, H, W)`` through the segmentor's data preprocessor."""
    from mmseg.structures import SegDataSample
    meta = dict(ori_shape=shape, pad_shape=shape, img_shape=shape)
    data = model.data_preprocessor(dict(inputs=[torch.randint(0, 256, (3, *shape), dtype=torch.uint8)],
                                        data_samples=[SegDataSample(metainfo=meta)]), False)
    return (data['inputs'],)


def analyse(cfg, shape: list[int] | None) -> dict:
    """Build the config's model and count it; returns ``count``'s dict plus ``input``."""
    from mmengine.model import revert_sync_batchnorm

    from projects.pointcloud.models import BasePointModel
    from projects.runtime import build_model
    model = revert_sync_batchnorm(build_model(cfg))  # eval mode; SyncBN needs a process group
    if isinstance(model, BasePointModel):
        if shape is None:
            shape = [cfg.get('num_points')] if cfg.get('num_points') else None
        if shape is None or len(shape) != 1:
            raise ValueError(f'point-cloud config {cfg.filename}: --shape takes one number, the '
                             f'points per cloud (got {shape}; the config has no num_points)')
        inputs = point_inputs(model, shape[0])
        res = count(PointCloudForward(model), inputs)
        res['input'] = f'{shape[0]} points x {model.in_channels} channels'
        return res
    if shape is None:
        shape = list(cfg.get('crop_size') or []) or None
    if shape is None or len(shape) not in (1, 2):
        raise ValueError(f'segmentation config {cfg.filename}: --shape takes H W (or one side); '
                         f'got {shape} and the config has no crop_size')
    hw = (shape[0], shape[-1])
    if getattr(model, 'auxiliary_head', None) is not None:
        model.auxiliary_head = None  # training-only
    res = count(model, image_inputs(model, hw))
    res['input'] = f'image (3, {hw[0]}, {hw[1]})'
    return res


def _size(n: float) -> str:
    for unit, div in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if n >= div:
            return f'{n / div:.3g}{unit}'
    return str(int(n))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Parameters and FLOPs (multiply-adds) of a whole model')
    p.add_argument('config', help='config file')
    p.add_argument('--shape', type=int, nargs='+',
                   help='image H W (segmentation) or points N (point clouds); default from the config')
    p.add_argument('--table', action='store_true', help='also print the per-module table')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='override config entries')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from projects.runtime import load_config
    cfg = load_config(args.config, args.cfg_options)
    res = analyse(cfg, args.shape)
    line = '=' * 40
    print(f'{line}\nconfig: {args.config}\ninput: {res["input"]}\n'
          f'FLOPs: {_size(res["flops"])} (multiply-adds, mmengine FlopAnalyzer)\n'
          f'params: {_size(res["params"])} ({res["params"]:,})\n{line}')
    if res['not_counted']:
        print('not counted (no FLOP rule): ' +
              ', '.join(f'{op} x{n}' for op, n in sorted(res['not_counted'].items())))
    if args.table:
        from mmengine.analysis import complexity_stats_table
        print(complexity_stats_table(flops=res['analyzer'], max_depth=3, show_param_shapes=False))
    return res


if __name__ == '__main__':
    main()
