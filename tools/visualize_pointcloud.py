"""Render point clouds: ground truth | prediction | errors, with a class legend, as PNG and coloured PLY.

A file::

    python tools/visualize_pointcloud.py cloud.ply --out DIR
    python tools/visualize_pointcloud.py ply_data_test0.h5 --index 3 --config CONFIG --out DIR  # class names
    python tools/visualize_pointcloud.py shape.txt --label-column -1 --pred pred.txt --out DIR
    python tools/visualize_pointcloud.py PRED_DIR/00003.npz --config CONFIG --out DIR  # tools/test.py --out

Samples of a config's dataset, optionally predicted by a checkpoint (one picture per sample,
plus ``index.html`` and ``contact_sheet.png`` when there are several)::

    python tools/visualize_pointcloud.py --config CFG [--checkpoint CKPT] --split val --index 0 5 9 --out DIR
    python tools/visualize_pointcloud.py --config CFG --checkpoint CKPT --batch --num 16 --out DIR

A file with ``--config`` and ``--checkpoint`` is predicted too (it goes through the config's test
pipeline). Pictures are rendered offscreen with open3d, or with matplotlib when open3d cannot create
a context (a log line names the renderer); ``--show`` also opens an interactive open3d window when a
display exists. The camera frames the cloud and is the same for every view of a sample. Progress
bars count the samples in a terminal (``--quiet``: none).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402

from projects.colors import class_palette, colorize  # noqa: E402
from projects.pointcloud import visualization as vis  # noqa: E402
from projects.progress import add_quiet_argument, track, write  # noqa: E402
from projects.sheets import contact_sheet, write_index_html  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Render point clouds with labels and predictions')
    p.add_argument('file', nargs='?', help=f'point-cloud file ({", ".join(vis.CLOUD_SUFFIXES)})')
    p.add_argument('--index', type=int, nargs='+', help='sample(s) of an HDF5/NPY batch or of the dataset')
    p.add_argument('--num', type=int, help='with --config: the first N samples of the split')
    p.add_argument('--batch', action='store_true',
                   help='batch mode: also write index.html and contact_sheet.png (implied by several samples)')
    p.add_argument('--labels', help='ground-truth labels (.npy or text, one per point or one per cloud)')
    p.add_argument('--pred', help='predicted labels (.npy or text)')
    p.add_argument('--label-column', type=int, help='text files: column holding the labels (e.g. -1)')
    p.add_argument('--config', help='mmengine config: dataset samples, class names, model')
    p.add_argument('--checkpoint', help='checkpoint of --config: predict the samples')
    p.add_argument('--split', default='val', choices=['train', 'val', 'test'], help='dataset split (default val)')
    p.add_argument('--category', type=int, help='category id of a file for part segmentation models')
    p.add_argument('--classes', nargs='+', help='class names for the legend (default: the dataset\'s)')
    p.add_argument('--out', default='work_dirs/vis_pointcloud', help='output folder')
    p.add_argument('--renderer', default='auto', choices=['auto', 'open3d', 'matplotlib'])
    p.add_argument('--size', type=int, nargs=2, default=(400, 400), metavar=('W', 'H'), help='panel size')
    p.add_argument('--point-size', type=float, default=3.0, help='point size in pixels')
    p.add_argument('--up', default='y', choices=['x', 'y', 'z'], help='up axis of the data (default y)')
    p.add_argument('--no-ply', action='store_true', help='do not write coloured PLY files')
    p.add_argument('--show', action='store_true', help='also open an interactive window (needs a display)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None, help='override config entries')
    add_quiet_argument(p)
    args = p.parse_args(argv)
    if args.file is None and args.config is None:
        p.error('give a point-cloud FILE or --config (with --index/--num)')
    if args.checkpoint and not args.config:
        p.error('--checkpoint needs --config')
    if args.file is not None and args.index is not None and len(args.index) > 1:
        p.error('a file takes one --index')
    return args


# --------------------------------------------------------------------------- config + model
class ConfigRunner:
    """Dataset, pipeline, collate and (optionally) model of a config, built through its registries."""

    def __init__(self, config: str, checkpoint: str | None, split: str, cfg_options=None):
        from projects import runtime
        self.cfg = runtime.load_config(config, cfg_options)
        self.split = split
        self.key = f'{split}_dataloader'
        runtime.dataset_cfg(self.cfg, split)          # fail early on a missing split
        self.collate = runtime.build_collate(self.cfg, split)
        self._dataset = None
        self.model = runtime.build_model(self.cfg, checkpoint) if checkpoint else None

    @property
    def dataset(self):
        if self._dataset is None:
            from projects import runtime
            self._dataset = runtime.build_dataset(self.cfg, self.split)
        return self._dataset

    def metainfo(self) -> dict:
        """The dataset's metainfo; the class attribute ``METAINFO`` if the data is not on disk."""
        from mmengine.registry import DATASETS
        try:
            return dict(self.dataset.metainfo)
        except (FileNotFoundError, OSError) as err:
            cls = DATASETS.get(self.cfg[self.key].dataset['type'])
            print_log(f'class names from {getattr(cls, "__name__", cls)}.METAINFO ({err})', logger='current')
            return dict(getattr(cls, 'METAINFO', {}) or {})

    def pack(self, points: np.ndarray, gt=None, category=None):
        """A file's points through the config's test pipeline (labels filled in when unknown)."""
        from mmengine.registry import TRANSFORMS
        n = len(points)
        results = dict(pos=points.astype(np.float32), label=np.zeros(1, np.int64), seg=np.zeros(n, np.int64))
        if gt is not None:
            results['label' if gt.size == 1 else 'seg'] = gt
        if category is not None:
            results['category'] = category
        for t in self.cfg[self.key].dataset.get('pipeline', []):
            results = TRANSFORMS.build(t)(results) if isinstance(t, dict) else t(results)
        return results

    def predict(self, sample) -> np.ndarray:
        import torch
        with torch.no_grad():
            out = self.model.test_step(self.collate([sample]))[0]
        for key in ('pred', 'pred_label', 'pred_labels', 'pred_seg', 'seg_pred'):
            val = out.get(key) if isinstance(out, dict) else getattr(out, key, None)
            if val is not None:
                return np.asarray(val.cpu() if hasattr(val, 'cpu') else val).reshape(-1).astype(np.int64)
        raise KeyError(f'cannot find a prediction in the model output (keys {sorted(out) if isinstance(out, dict) else out})')


def _from_sample(sample) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """(points, labels, category) of a packed dataset sample (a PyG ``Data`` or a dict)."""
    get = sample.get if isinstance(sample, dict) else (lambda k: getattr(sample, k, None))
    pos = get('pos')
    if pos is None and get('inputs') is not None:
        return _from_sample(get('inputs'))
    if pos is None:
        raise KeyError(f'dataset sample has no "pos" ({type(sample).__name__})')
    y, cat = get('y'), get('category')
    to_np = (lambda t: np.asarray(t.cpu() if hasattr(t, 'cpu') else t))
    return (to_np(pos)[:, :3].astype(np.float64), None if y is None else to_np(y).reshape(-1).astype(np.int64),
            None if cat is None else int(to_np(cat).reshape(-1)[0]))


def _title(name: str, category: int | None, meta: dict) -> str | None:
    """``name  |  <category name>`` for a part-segmentation sample, else None (the default title)."""
    classes = meta.get('classes')
    if category is None or not classes or not 0 <= category < len(classes):
        return None
    return f'{name}  |  {classes[category]}'


# --------------------------------------------------------------------------- main
def show_interactive(points, views) -> None:
    """Open an open3d window with the views side by side (needs a display)."""
    if not os.environ.get('DISPLAY') and not os.environ.get('WAYLAND_DISPLAY'):
        print_log('--show: no display found, pictures were written only', logger='current')
        return
    from projects.compat.open3d import import_open3d
    o3d = import_open3d()
    shift = np.ptp(points[:, 0]) * 1.2 + 1e-6
    geoms = []
    for i, cols in enumerate(views):
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points + np.array([i * shift, 0, 0])))
        pc.colors = o3d.utility.Vector3dVector(cols / 255.0)
        geoms.append(pc)
    o3d.visualization.draw_geometries(geoms, window_name='attn_ops point cloud')


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    runner = ConfigRunner(args.config, args.checkpoint, args.split, args.cfg_options) if args.config else None
    meta = runner.metainfo() if runner else {}
    renderer = vis.build_renderer(args.renderer, args.point_size)
    w, h = args.size
    jobs = []  # (name, points, colors, gt, pred, title)
    if args.file:
        cloud = vis.read_cloud(args.file, args.index[0] if args.index else None, args.label_column)
        gt = vis.read_labels(args.labels) if args.labels else cloud['labels']
        pred = vis.read_labels(args.pred) if args.pred else cloud['pred']
        cat = args.category if args.category is not None else cloud['category']
        if runner and runner.model is not None and pred is None:
            pred = runner.predict(runner.pack(cloud['points'], gt, cat))
        stem = osp.splitext(osp.basename(args.file))[0] + (f'_{args.index[0]}' if args.index else '')
        jobs.append((stem, cloud['points'], cloud['colors'], gt, pred, _title(stem, cat, meta)))
    else:
        n = len(runner.dataset)
        indices = args.index if args.index else list(range(min(args.num or 1, n)))
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise IndexError(f'--index {bad} out of range: the {args.split} split has {n} samples')
        for i in track(indices, desc='loading' + (' + predicting' if runner.model else ''), quiet=args.quiet):
            sample = runner.dataset[i]
            pts, gt, cat = _from_sample(sample)
            pred = runner.predict(sample) if runner.model is not None else None
            name = f'{args.split}_{i:05d}'
            jobs.append((name, pts, None, gt, pred, _title(name, cat, meta)))
    results = []
    for name, pts, colors, gt, pred, title in track(jobs, desc='rendering', quiet=args.quiet):
        per_point = any(x is not None and x.size == len(pts) and x.size > 1 for x in (gt, pred))
        names = args.classes or (vis.label_names(meta, per_point) if meta else None)
        res = vis.visualize_sample(
            pts, args.out, name, gt=gt, pred=pred, class_names=names, palette=meta.get('palette'),
            colors=colors, renderer=renderer, width=w, height=h, up=args.up, ply=not args.no_ply, title=title)
        write(f'{name}: {res["image"]}' + ('' if res['accuracy'] is None else f'  (accuracy {100 * res["accuracy"]:.1f}%)'))
        results.append(res)
        if args.show:
            show_interactive(pts, [colorize(x, class_palette(max(len(names or []), int(max(x.max(), 0)) + 1)))
                                   for x in (gt, pred) if x is not None] or [vis.height_colors(pts, args.up)])
    if len(results) > 1 or args.batch:
        caps = [f'{j[0]}' + ('' if r['accuracy'] is None else f' acc {100 * r["accuracy"]:.1f}%')
                for j, r in zip(jobs, results)]
        sheet = contact_sheet([r['image'] for r in results], osp.join(args.out, 'contact_sheet.png'), captions=caps)
        page = write_index_html([dict(image=r['image'], caption=c, links=r['ply']) for r, c in zip(results, caps)],
                                    osp.join(args.out, 'index.html'), title=f'{args.config or args.file} ({args.split})')
        print(f'contact sheet: {sheet}\nindex page: {page}')
    return results


if __name__ == '__main__':
    main()
