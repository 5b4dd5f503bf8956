"""Image | ground truth | prediction sheet of a segmentation checkpoint on a few validation images.

    python tools/visualize_segmentation.py CONFIG CHECKPOINT --out DIR [--num N] [--split val]
                                           [--indices I ...] [--cfg-options key=value ...]

The model and the dataset are built from the config through mmengine's registries (the config's
``default_scope`` and ``custom_imports``), the checkpoint is loaded with the repository's safe
loader, and every image goes through the config's ``<split>_dataloader`` pipeline and the model's
``test_step``. Colours and class names are the dataset's ``METAINFO``. Writes
``DIR/segmentation_sheet.png`` and prints its path.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Image | ground truth | prediction sheet')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num', type=int, default=4, help='number of images (default 4)')
    parser.add_argument('--indices', type=int, nargs='+', help='dataset indices (overrides --num)')
    parser.add_argument('--split', default='val', choices=['train', 'val', 'test'],
                        help='which <split>_dataloader.dataset to draw from (default val)')
    parser.add_argument('--panel-size', type=int, default=200, help='panel height in pixels')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config entries, e.g. val_dataloader.dataset.data_root=...')
    return parser.parse_args(argv)


def build_from_config(config: str, checkpoint: str, split: str, cfg_options=None):
    """(cfg, model in eval mode with the checkpoint loaded, dataset, collate function)."""
    from projects import runtime
    cfg = runtime.load_config(config, cfg_options)
    model = runtime.build_model(cfg, checkpoint)
    return cfg, model, runtime.build_dataset(cfg, split), runtime.build_collate(cfg, split)


def pick_indices(n_data: int, num: int, indices=None) -> list[int]:
    """The given indices (checked), else ``num`` indices spread evenly over the dataset."""
    if indices:
        bad = [i for i in indices if not 0 <= i < n_data]
        if bad:
            raise IndexError(f'indices {bad} out of range for a dataset of {n_data} samples')
        return list(indices)
    num = max(1, min(num, n_data))
    return sorted({int(round(x)) for x in np.linspace(0, n_data - 1, num)})


def predict_rows(model, dataset, collate, indices) -> list[dict]:
    """Run the model on ``dataset[i]`` and return rows for :func:`segmentation_sheet`."""
    import mmcv
    import torch
    rows = []
    for i in indices:
        with torch.no_grad():
            sample = model.test_step(collate([dataset[i]]))[0]
        pred = sample.pred_sem_seg.data[0].cpu().numpy()
        gt = sample.gt_sem_seg.data[0].cpu().numpy() if 'gt_sem_seg' in sample else None
        img_path = sample.metainfo.get('img_path')
        image = mmcv.imread(img_path, channel_order='rgb') if img_path else None
        if image is None or image.shape[:2] != pred.shape:
            raise ValueError(f'sample {i}: prediction of shape {pred.shape} does not match the image '
                             f'{None if image is None else image.shape[:2]} at {img_path}')
        if gt is not None and gt.shape != pred.shape:
            gt = mmcv.imresize(gt.astype(np.uint8), pred.shape[::-1], interpolation='nearest')
        rows.append(dict(image=image, gt=gt, pred=pred, name=osp.basename(img_path)))
    return rows


def main(argv=None) -> str:
    args = parse_args(argv)
    from projects.segmentation.visualization import segmentation_sheet
    cfg, model, dataset, collate = build_from_config(args.config, args.checkpoint, args.split, args.cfg_options)
    meta = dataset.metainfo
    indices = pick_indices(len(dataset), args.num, args.indices)
    rows = predict_rows(model, dataset, collate, indices)
    title = f'{osp.splitext(osp.basename(args.config))[0]} ({args.split})'
    out = segmentation_sheet(rows, meta['classes'], meta['palette'], osp.join(args.out, 'segmentation_sheet.png'),
                             panel_size=args.panel_size, title=title)
    print(f'segmentation sheet ({len(rows)} images): {out}')
    return out


if __name__ == '__main__':
    main()
