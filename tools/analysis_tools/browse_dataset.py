"""Show what a config's pipeline feeds the network: one picture per sample after the transforms,
and a contact sheet of them all.

    python tools/analysis_tools/browse_dataset.py CONFIG [--split train] [--num 8 | --index I ...]
                                                  [--out DIR] [--seed 0] [--cfg-options ...]

* Segmentation: the image as the pipeline outputs it (after resizing, cropping, flipping and
  photometric distortion; before the model's mean/std normalisation) | its labels over it | the
  labels, with the dataset's palette and class names.
* Point clouds: the points after the transforms (sampling, scaling, rotation, jitter...) coloured
  by their labels (per point, or the cloud's class), rendered offscreen, with the class names
  (part names for part segmentation).

Random transforms of sample ``i`` draw from seed ``--seed + i``: a sample looks the same whether
browsed alone or among others, and a run repeats; change ``--seed`` to see other draws. Writes
``DIR/<split>_<index>.png`` and ``DIR/contact_sheet.png``.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from projects.progress import add_quiet_argument, track, write  # noqa: E402


def segmentation_picture(sample: dict, metainfo: dict, out_file: str, title: str) -> str:
    """Image | labels over the image | labels of one packed mmseg sample (``PackSegInputs``)."""
    from projects.colors import class_palette, colorize
    from projects.sheets import Panel, compose_grid, label_legend
    img = sample['inputs'].numpy().transpose(1, 2, 0)[..., ::-1]   # BGR (C, H, W) -> RGB (H, W, C)
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    gt = sample['data_samples'].gt_sem_seg.data.numpy()[0]
    names = list(metainfo['classes'])
    palette = class_palette(len(names), metainfo.get('palette'))
    colors = colorize(gt, palette)
    labelled = (gt >= 0) & (gt < len(names))
    blend = img.copy()
    blend[labelled] = (0.5 * img[labelled] + 0.5 * colors[labelled]).astype(np.uint8)
    panels = [Panel(img, f'image {img.shape[1]}x{img.shape[0]}'), Panel(blend, 'labels over the image'),
              Panel(colors, 'labels')]
    legend = label_legend([gt], palette, names, max_entries=None)
    if (~labelled).any():
        from projects.colors import IGNORE_COLOR
        legend.append(('ignored', IGNORE_COLOR))
    return compose_grid([panels], out_file, legend=legend, title=title, panel_height=max(160, img.shape[0]))


def pointcloud_picture(sample, metainfo: dict, out_dir: str, name: str, renderer, up: str,
                       size: tuple[int, int]) -> str:
    """The transformed cloud coloured by its labels (``projects.pointcloud.visualization``)."""
    from projects.pointcloud import visualization as vis
    pos = sample.pos.numpy().astype(np.float64)
    y = None if getattr(sample, 'y', None) is None else sample.y.numpy().reshape(-1)
    per_point = y is not None and y.size == len(pos) and y.size > 1
    classes = metainfo.get('classes')
    title = f'{name}  |  {pos.shape[0]} points'
    category = getattr(sample, 'category', None)
    if category is not None and classes is not None:
        title += f'  |  {classes[int(category.reshape(-1)[0])]}'
    res = vis.visualize_sample(pos, out_dir, name, gt=y, class_names=vis.label_names(metainfo, per_point),
                               palette=None if per_point else metainfo.get('palette'), renderer=renderer,
                               width=size[0], height=size[1], up=up, ply=False, title=title)
    return res['image']


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Pictures of what the pipeline feeds the network')
    p.add_argument('config', help='config file')
    p.add_argument('--split', default='train', choices=['train', 'val', 'test'], help='dataset split (default train)')
    p.add_argument('--num', type=int, default=8, help='the first N samples (default 8)')
    p.add_argument('--index', type=int, nargs='+', help='these samples instead of the first --num')
    p.add_argument('--out', default='work_dirs/browse_dataset', help='output folder')
    p.add_argument('--seed', type=int, default=0, help='seed of the random transforms')
    p.add_argument('--up', default='z', choices=['x', 'y', 'z'], help='point clouds: up axis (default z)')
    p.add_argument('--size', type=int, nargs=2, default=(360, 360), metavar=('W', 'H'),
                   help='point clouds: panel size in pixels')
    p.add_argument('--renderer', default='auto', choices=['auto', 'open3d', 'matplotlib'],
                   help='point clouds: renderer')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None, help='override config entries')
    add_quiet_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> list[str]:
    args = parse_args(argv)
    from mmengine.runner import set_random_seed

    from projects import runtime
    from projects.sheets import contact_sheet
    cfg = runtime.load_config(args.config, args.cfg_options)
    dataset = runtime.build_dataset(cfg, args.split)
    n = len(dataset)
    indices = args.index if args.index else list(range(min(args.num, n)))
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise IndexError(f'--index {bad} out of range: the {args.split} split of {args.config} has {n} samples')
    metainfo = dict(dataset.metainfo)
    pointcloud = cfg.get('default_scope') == 'pointcloud'
    renderer = None
    if pointcloud:
        from projects.pointcloud.visualization import build_renderer
        renderer = build_renderer(args.renderer)
    images = []
    for i in track(indices, desc='browse dataset', quiet=args.quiet):
        name = f'{args.split}_{i:05d}'
        set_random_seed(args.seed + i)
        sample = dataset[i]
        if pointcloud:
            images.append(pointcloud_picture(sample, metainfo, args.out, name, renderer, args.up, tuple(args.size)))
        else:
            path = sample['data_samples'].img_path
            images.append(segmentation_picture(sample, metainfo, osp.join(args.out, f'{name}.png'),
                                               f'{name}  |  {osp.basename(path)}'))
    sheet = contact_sheet(images, osp.join(args.out, 'contact_sheet.png'),
                          captions=[osp.splitext(osp.basename(p))[0] for p in images])
    write(f'{len(images)} {args.split} samples after the pipeline of {args.config}: {args.out}\n'
          f'contact sheet: {sheet}')
    return images


if __name__ == '__main__':
    main()
