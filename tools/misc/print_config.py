"""Print a config as the tools resolve it: ``_base_`` files merged, ``--cfg-options`` applied,
the default work dir filled in.

    python tools/misc/print_config.py CONFIG [--cfg-options key=value ...] [--dump FILE]

``--dump FILE`` also writes the resolved config (``.py``, ``.json`` or ``.yaml``); it is a
complete config of its own, without ``_base_``.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mmengine.config import DictAction  # noqa: E402

from projects.runtime import load_config  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Print the resolved config')
    p.add_argument('config', help='config file')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='override config entries, e.g. model.decode_head.attn.type=MultiHeadAttention')
    p.add_argument('--dump', metavar='FILE', help='also write the resolved config to FILE (.py/.json/.yaml)')
    return p.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    text = cfg.pretty_text
    print(f'Config ({args.config}):\n{text}')
    if args.dump:
        if osp.splitext(args.dump)[1] not in ('.py', '.json', '.yaml', '.yml'):
            raise ValueError(f'--dump: {args.dump} must end in .py, .json or .yaml')
        os.makedirs(osp.dirname(osp.abspath(args.dump)), exist_ok=True)
        cfg.dump(args.dump)
        print(f'resolved config written to {args.dump}')
    return text


if __name__ == '__main__':
    main()
