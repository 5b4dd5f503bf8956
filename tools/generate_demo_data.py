"""Write the synthetic DemoShapes segmentation dataset (ADE20K folder layout).

    python tools/generate_demo_data.py [--out data/demo_shapes] [--num-train 200] [--num-val 50]
                                       [--size 64] [--seed 0] [--quiet]

A progress bar counts the images in a terminal (none under ``--quiet`` or in a piped log).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from functools import partial

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from projects.progress import add_quiet_argument, track  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate the synthetic DemoShapes dataset')
    parser.add_argument('--out', default='data/demo_shapes', help='output folder')
    parser.add_argument('--num-train', type=int, default=200, help='training images')
    parser.add_argument('--num-val', type=int, default=50, help='validation images')
    parser.add_argument('--size', type=int, default=64, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    add_quiet_argument(parser)
    args = parser.parse_args(argv)

    import projects.segmentation  # noqa: F401  (mmcv shim before mmseg)
    from projects.segmentation.demo_shapes import generate

    generate(args.out, args.num_train, args.num_val, args.size, args.seed,
             progress=partial(track, desc='demo shapes', quiet=args.quiet))
    print(f'wrote {args.num_train} training and {args.num_val} validation images to {args.out}')


if __name__ == '__main__':
    main()
