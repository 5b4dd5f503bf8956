"""Attention maps and memory units of a trained model, on images and point clouds.

    python tools/visualize_attention.py CONFIG CHECKPOINT [--split val] [--index I ...] [--num N]
        [--file IMAGE_OR_CLOUD] [--layer NAME ...] [--query X,Y ...] [--query-index I ...]
        [--heads H ...] [--units K] [--out DIR]

The model is built from the config and the checkpoint is loaded safely (``projects.runtime``);
samples come from the config's ``<split>_dataloader`` dataset (``--index``, or the first
``--num``) or from a file (an image through the split's pipeline without annotations; a cloud in
any format ``tools/visualize_pointcloud.py`` reads). Forward hooks on the attention layers
(every layer with a map, or ``--layer`` by module name, glob or op type) call each op a second
time on the same input with ``return_attn=True`` (:mod:`projects.attention_maps`), so no model
code changes. One forward pass per sample; what is drawn depends on the op's ``attn_form``:

* ``dense`` / ``local`` (self, multi-head, cross, offset, window, outlook ...): for each query,
  one panel per head (columns) and layer (rows), the query's attention over the image as a heatmap
  (``--query X,Y``: pixels of the model input) or over the cloud as point colours
  (``--query-index I``: a point of the cloud), the query ringed. Without a query: the most and
  the least focused queries (lowest and highest entropy of their rows, heads averaged).
* ``memory`` (External Attention: token, block, multi-head): the S memory units ranked by the
  attention mass they take over all the samples drawn; per sample and head a grid of the S units'
  maps (what each unit attends to), and one sheet of the ``--units`` strongest units across the
  samples.

Each panel is scaled from 0 to its own maximum (given in its title). Token grids of a feature map
are resized bilinearly onto the input image; on a cloud whose attention runs on fewer points
(sample-and-group stages), each point takes the colour of its nearest attention token. Writes
PNGs, the drawn values of each sheet (``<sheet>.npz``, one array per panel, for checking against
weights recomputed elsewhere), a coloured PLY per cloud panel (``--no-ply`` to skip),
``index.html``, and prints every path.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from dataclasses import dataclass

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from projects.attention_maps import (AttentionRecorder, focused_queries, select_layers,  # noqa: E402
                                     unit_mass)
from projects.progress import add_quiet_argument, track  # noqa: E402
from projects.sheets import (Panel, compose_grid, draw_marker, overlay_heatmap, scale_legend,  # noqa: E402
                             write_index_html)

CMAP = 'jet'
UNIT_COLS = 8       # memory units per row of a sample's unit grid


def parse_query(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--query takes X,Y (pixels of the model input), got {text!r}') from None
    return x, y


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Attention maps and memory units of a trained model')
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--split', default='val', choices=['train', 'val', 'test'], help='dataset split (default val)')
    p.add_argument('--index', type=int, nargs='+', help='dataset indices (default: the first --num)')
    p.add_argument('--num', type=int, default=1, help='number of dataset samples without --index (default 1)')
    p.add_argument('--file', help='an image, or a point cloud (PLY/PCD/XYZ/TXT/NPY/NPZ/HDF5), instead of the dataset')
    p.add_argument('--file-index', type=int, help='the cloud of an HDF5/NPY batch file')
    p.add_argument('--category', type=int, help='category id of a cloud file for part segmentation models')
    p.add_argument('--layer', nargs='+',
                   help='attention layers: module names, globs or op types (default: all with a map)')
    p.add_argument('--query', type=parse_query, nargs='+', metavar='X,Y',
                   help='image queries, pixels of the model input')
    p.add_argument('--query-index', type=int, nargs='+', metavar='I', help='point-cloud queries, point indices')
    p.add_argument('--heads', type=int, nargs='+', help='heads to draw (default all)')
    p.add_argument('--units', type=int, default=8,
                   help='strongest memory units on the sheet across samples (default 8)')
    p.add_argument('--out', default='work_dirs/vis_attention', help='output folder')
    p.add_argument('--panel-size', type=int, default=160, help='panel height in pixels (default 160)')
    p.add_argument('--renderer', default='auto', choices=['auto', 'open3d', 'matplotlib'], help='point-cloud renderer')
    p.add_argument('--point-size', type=float, default=4.0, help='rendered point size in pixels')
    p.add_argument('--up', default='y', choices=['x', 'y', 'z'], help='up axis of the clouds (default y)')
    p.add_argument('--no-ply', action='store_true', help='do not write coloured PLY files')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None, help='override config entries')
    add_quiet_argument(p)
    args = p.parse_args(argv)
    if args.query and args.query_index:
        p.error('give --query (images) or --query-index (point clouds), not both')
    if args.file and args.index:
        p.error('give --file or --index, not both')
    return args


# --------------------------------------------------------------------------- samples and records
@dataclass
class Sample:
    """One sample after the model ran on it: what to draw on and the weights it formed."""

    name: str
    records: list
    image: np.ndarray | None = None       # (H, W, 3) uint8 RGB at the model input's (padded) size
    points: np.ndarray | None = None      # (N, 3) the cloud the model read


def is_point_model(model) -> bool:
    return hasattr(model, 'dense_inputs')


def pack_image(cfg, split: str, path: str):
    """An image file through the split's pipeline, annotation loading left out."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    from projects.runtime import dataset_cfg
    if not osp.isfile(path):
        raise FileNotFoundError(f'image file not found: {path}')
    init_default_scope(cfg.get('default_scope', None))
    steps = [t for t in dataset_cfg(cfg, split).get('pipeline', []) if 'LoadAnnotations' not in str(t.get('type'))]
    return Compose(steps)(dict(img_path=path, seg_fields=[], reduce_zero_label=False))


def pick_samples(runner, args) -> list[tuple[str, object]]:
    """``(name, packed sample)`` pairs from ``--file`` or the dataset."""
    if args.file:
        stem = osp.splitext(osp.basename(args.file))[0]
        if is_point_model(runner.model):
            from projects.pointcloud.visualization import read_cloud
            cloud = read_cloud(args.file, args.file_index)
            return [(stem, runner.pack(cloud['points'], None, args.category))]
        return [(stem, pack_image(runner.cfg, args.split, args.file))]
    n = len(runner.dataset)
    indices = args.index if args.index else list(range(min(max(args.num, 1), n)))
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise IndexError(f'--index {bad} out of range: the {args.split} split has {n} samples')
    return [(f'{args.split}_{i:05d}', runner.dataset[i]) for i in indices]


def run_sample(model, collate, name: str, sample, layers: dict) -> Sample:
    """Run the model once on ``sample`` with the recorder on ``layers``."""
    batch = collate([sample])
    sources = []
    if is_point_model(model):
        from projects.pointcloud.models.blocks import NeighborEmbeddingStage
        sources = [m for m in model.modules() if isinstance(m, NeighborEmbeddingStage)]
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        with AttentionRecorder(layers, sources) as rec:
            model(**data, mode='tensor')
    if is_point_model(model):
        pos = model.dense_inputs(data['inputs'])[0]
        return Sample(name, rec.records, points=pos[0].cpu().double().numpy())
    raw = batch['inputs'][0]
    image = raw.permute(1, 2, 0).cpu().numpy()[..., ::-1].astype(np.uint8)   # BGR as mmcv loads -> RGB
    hp, wp = data['inputs'].shape[-2:]
    canvas = np.zeros((hp, wp, 3), np.uint8)                                # the preprocessor pads bottom/right
    canvas[:image.shape[0], :image.shape[1]] = image[:hp, :wp]
    return Sample(name, rec.records, image=canvas)


# --------------------------------------------------------------------------- geometry of tokens
def pixel_token(record, xy: tuple[float, float], size: tuple[int, int]) -> int:
    """The token of ``record`` (a map op) holding pixel ``xy`` of an input of ``size`` (H, W)."""
    if record.hw is None:
        raise ValueError(f'{record.name} ({record.op}) ran on tokens without a grid; it cannot be drawn over an image')
    gh, gw = record.hw
    x, y = xy
    if not (0 <= x < size[1] and 0 <= y < size[0]):
        raise ValueError(f'--query {x:g},{y:g} is outside the model input of {size[1]} x {size[0]} pixels')
    return int(y * gh / size[0]) * gw + int(x * gw / size[1])


def token_centre(record, token: int, size: tuple[int, int]) -> tuple[float, float]:
    """Pixel (x, y) of the centre of ``token``'s cell on an input of ``size`` (H, W)."""
    gh, gw = record.hw
    r, c = divmod(token, gw)
    return (c + 0.5) * size[1] / gw - 0.5, (r + 0.5) * size[0] / gh - 0.5


def token_positions(record, points: np.ndarray) -> np.ndarray:
    """(N_tokens, 3) positions of the record's tokens: its resampled positions, else the cloud's points."""
    if record.positions is not None:
        return record.positions[0].double().numpy()
    if record.num_tokens != len(points):
        raise ValueError(f'{record.name} ({record.op}) attends over {record.num_tokens} tokens, the cloud has '
                         f'{len(points)} points, and no sampling stage told where the tokens lie')
    return points


def nearest(targets: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Index of the nearest row of ``sources`` (M, 3) for every row of ``targets`` (N, 3)."""
    return torch.cdist(torch.as_tensor(targets), torch.as_tensor(sources)).argmin(1).numpy()


# --------------------------------------------------------------------------- panels
class Canvas:
    """Draws token maps of one sample: heatmaps over its image or colours over its cloud."""

    def __init__(self, sample: Sample, args, renderer=None):
        self.sample, self.args, self.renderer = sample, args, renderer
        self.plys: dict[str, str] = {}
        if sample.image is not None:
            from PIL import Image
            h, w = sample.image.shape[:2]
            self.scale = args.panel_size / h
            size = (max(1, round(w * self.scale)), args.panel_size)
            self.base = np.asarray(Image.fromarray(sample.image).resize(size, Image.NEAREST))
        else:
            from projects.pointcloud.visualization import frame_camera
            self.camera = frame_camera(sample.points, args.panel_size, args.panel_size, up=args.up)
            self._upsample: dict[str, np.ndarray] = {}

    def query(self, record, loc):
        """``(token, marker)``: the record's token for a query location (a pixel (x, y) or a 3-D point)."""
        if self.sample.image is not None:
            return pixel_token(record, loc, self.sample.image.shape[:2]), loc
        pos = token_positions(record, self.sample.points)
        token = int(nearest(np.asarray(loc, np.float64)[None], pos)[0])
        return token, pos[token]

    def panel(self, record, values: np.ndarray, title: str, marker=None, ply_name: str | None = None) -> Panel:
        """A panel of ``values`` (one per token of ``record``), scaled 0 .. max, ``marker`` ringed."""
        vmax = float(values.max()) if values.size and values.max() > 0 else 1.0
        title = f'{title}\nmax {vmax:.3g}'
        if self.sample.image is not None:
            heat = values.reshape(record.hw)
            img = overlay_heatmap(self.base, heat, alpha=0.5, cmap=CMAP, vmin=0.0, vmax=vmax)
            if marker is not None:
                img = draw_marker(img, ((marker[0] + 0.5) * self.scale - 0.5, (marker[1] + 0.5) * self.scale - 0.5))
            return Panel(img, title)
        from projects.pointcloud.visualization import render_values, write_ply
        if record.name not in self._upsample:
            self._upsample[record.name] = nearest(self.sample.points, token_positions(record, self.sample.points))
        per_point = values[self._upsample[record.name]]
        img, colours = render_values(self.sample.points, per_point, self.renderer, self.camera, cmap=CMAP,
                                     vmin=0.0, vmax=vmax, marks=None if marker is None else np.asarray(marker)[None])
        if ply_name and not self.args.no_ply:
            self.plys[ply_name] = write_ply(osp.join(self.args.out, f'{ply_name}.ply'), self.sample.points, colours)
        return Panel(img, title)

    def input_panel(self) -> Panel:
        if self.sample.image is not None:
            return Panel(self.base, self.sample.name)
        from projects.pointcloud.visualization import height_colors
        return Panel(self.renderer.render(self.sample.points, height_colors(self.sample.points, self.args.up),
                                          self.camera), self.sample.name)


def heads_of(record, heads) -> list[int]:
    if heads is None:
        return list(range(record.num_heads))
    bad = [h for h in heads if not 0 <= h < record.num_heads]
    if bad:
        raise ValueError(f'--heads {bad}: {record.name} ({record.op}) has {record.num_heads} heads')
    return list(heads)


def short(name: str) -> str:
    """A layer name short enough for a panel title (its last three parts)."""
    return '.'.join(name.split('.')[-3:])


# --------------------------------------------------------------------------- query sheets
def queries_of(sample: Sample, args) -> list[tuple[str, object]]:
    """``(label, location)`` of the queries to draw: the given ones, else the most and least focused."""
    dense = [r for r in sample.records if r.form == 'dense']
    if sample.image is not None:
        if args.query_index:
            raise ValueError('--query-index picks points of a cloud; on images give --query X,Y (pixels)')
        if args.query:
            return [(f'query ({x:g}, {y:g})', (x, y)) for x, y in args.query]
        size = sample.image.shape[:2]
        most, least = focused_queries(dense)
        return [('most focused query', token_centre(dense[0], most, size)),
                ('least focused query', token_centre(dense[0], least, size))]
    if args.query:
        raise ValueError('--query X,Y picks pixels of an image; on clouds give --query-index I (point indices)')
    if args.query_index:
        n = len(sample.points)
        bad = [i for i in args.query_index if not 0 <= i < n]
        if bad:
            raise IndexError(f'--query-index {bad} out of range: the cloud has {n} points')
        return [(f'query point {i}', sample.points[i]) for i in args.query_index]
    most, least = focused_queries(dense)
    pos = token_positions(dense[0], sample.points)
    return [('most focused query', pos[most]), ('least focused query', pos[least])]


def query_sheets(sample: Sample, canvas: Canvas, args) -> list[dict]:
    """One sheet per query: columns = layers, rows = heads."""
    dense = [r for r in sample.records if r.form == 'dense']
    out = []
    for qi, (label, loc) in enumerate(queries_of(sample, args)):
        rows, maps = {}, []
        for li, rec in enumerate(dense):
            token, marker = canvas.query(rec, loc)
            for h in heads_of(rec, args.heads):
                values = rec.weights[0, h, token].numpy()
                maps.append(dict(layer=rec.name, op=rec.op, head=h, query=token, values=values))
                rows.setdefault(h, []).append(canvas.panel(rec, values, f'{short(rec.name)} head {h}', marker,
                                                           f'{sample.name}_q{qi}_l{li}_h{h}'))
        rows = list(rows.values())
        where = (f'pixel ({loc[0]:.0f}, {loc[1]:.0f})' if sample.image is not None
                 else f'({", ".join(f"{v:.2f}" for v in loc)})')
        title = f'{sample.name}: {label} (ringed) at {where}'
        png = compose_grid(rows, osp.join(args.out, f'{sample.name}_query{qi}.png'), title=title,
                           legend=scale_legend(CMAP, ('0', 'half the panel max', 'panel max')), gap=6, margin=6)
        plys = {k: v for k, v in canvas.plys.items() if k.startswith(f'{sample.name}_q{qi}_')}
        out.append(dict(kind='query', image=png, caption=f'{sample.name}: {label}', links=plys, maps=maps))
    return out


# --------------------------------------------------------------------------- memory-unit sheets
def unit_sheets(samples: list[Sample], canvases: list[Canvas], args) -> list[dict]:
    """Memory units ranked by mass over all samples: a grid of every unit per sample and head,
    and one sheet of the strongest units across the samples per layer and head."""
    out = []
    names = list(dict.fromkeys(r.name for s in samples for r in s.records if r.form == 'memory'))
    for li, name in enumerate(names):
        recs = [next(r for r in s.records if r.name == name) for s in samples]
        mass = sum(unit_mass(r) for r in recs)                                   # (h, S)
        for h in heads_of(recs[0], args.heads):
            share = mass[h] / mass[h].sum()
            order = torch.argsort(share, descending=True).tolist()
            n_units = len(order)
            for sample, canvas, rec in zip(samples, canvases, recs):
                panels, maps = [], []
                for rank, s in enumerate(order):
                    values = rec.weights[0, h, :, s].numpy()
                    maps.append(dict(layer=name, op=rec.op, head=h, unit=s, rank=rank, values=values))
                    panels.append(canvas.panel(rec, values, f'unit {s} ({100 * float(share[s]):.1f}%)', None,
                                               f'{sample.name}_l{li}_h{h}_unit{s}'))
                rows = [panels[i:i + UNIT_COLS] for i in range(0, n_units, UNIT_COLS)]
                title = (f'{sample.name}: {name} ({rec.op}) head {h}: the {n_units} memory units by mass '
                         f'over {len(samples)} sample(s)')
                png = compose_grid(rows, osp.join(args.out, f'{sample.name}_units_l{li}_h{h}.png'), title=title,
                                   legend=scale_legend(CMAP, ('0', 'half the panel max', 'panel max')), gap=4, margin=4)
                plys = {k: v for k, v in canvas.plys.items() if k.startswith(f'{sample.name}_l{li}_h{h}_')}
                out.append(dict(kind='units', image=png, caption=f'{sample.name}: {name} head {h}, {n_units} units',
                                links=plys, maps=maps))
            top = order[:max(1, args.units)]
            rows = [[canvas.input_panel()] + [canvas.panel(rec, rec.weights[0, h, :, s].numpy(),
                                                           f'unit {s} ({100 * float(share[s]):.1f}%)')
                                              for s in top]
                    for canvas, rec in zip(canvases, recs)]
            title = (f'{name} ({recs[0].op}) head {h}: the {len(top)} strongest of {n_units} memory units '
                     f'(share of attention mass over {len(samples)} sample(s))')
            png = compose_grid(rows, osp.join(args.out, f'units_l{li}_h{h}.png'), title=title,
                               legend=scale_legend(CMAP, ('0', 'half the panel max', 'panel max')), gap=4, margin=4)
            out.append(dict(kind='units-across', image=png, caption=f'{name} head {h}: strongest units', links={},
                            maps=[]))
    return out


# --------------------------------------------------------------------------- main
def save_maps(result: dict) -> str | None:
    """The drawn maps of a sheet as ``<sheet>.npz`` beside its PNG, one float32 array per panel named
    ``<layer>.head<h>.query<token>`` or ``<layer>.head<h>.unit<s>`` (the values before colouring)."""
    if not result['maps']:
        return None
    arrays = {f"{m['layer']}.head{m['head']}." + (f"query{m['query']}" if 'query' in m else f"unit{m['unit']}"):
              np.asarray(m['values'], np.float32) for m in result['maps']}
    path = osp.splitext(result['image'])[0] + '.npz'
    np.savez(path, **arrays)
    return path


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    from tools.visualize_pointcloud import ConfigRunner   # dataset, collate, model and cloud files of a config
    runner = ConfigRunner(args.config, args.checkpoint, args.split, args.cfg_options)
    layers = select_layers(runner.model, args.layer)
    samples = [run_sample(runner.model, runner.collate, name, s, layers)
               for name, s in track(pick_samples(runner, args), desc='samples', quiet=args.quiet)]
    renderer = None
    if samples[0].points is not None:
        from projects.pointcloud.visualization import build_renderer
        renderer = build_renderer(args.renderer, args.point_size)
    canvases = [Canvas(s, args, renderer) for s in samples]
    results = []
    for sample, canvas in zip(samples, canvases):
        if any(r.form == 'dense' for r in sample.records):
            results += query_sheets(sample, canvas, args)
    if any(r.form == 'memory' for r in samples[0].records):
        results += unit_sheets(samples, canvases, args)
    for r in results:
        npz = save_maps(r)
        if npz:
            r['links'] = {'weights (npz)': npz, **r['links']}
    page = write_index_html(results, osp.join(args.out, 'index.html'),
                            title=f'Attention of {osp.basename(args.config)} ({args.file or args.split})')
    for r in results:
        print(f'{r["caption"]}: {r["image"]}')
        for ply in r['links'].values():
            print(f'  {ply}')
    print(f'index page: {page}')
    return results


if __name__ == '__main__':
    main()
