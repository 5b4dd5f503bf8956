"""The README's op table, generated from the registry.

One row per registered op: name and constructor defaults, family (its module in
``attn_ops/ops/``), layout, kind, padding-mask support, the attention weights ``return_attn=True``
gives, paper, time in N, parameters and forward FLOPs at a reference size, and how it relates to
the catalogue (the ``Catalogue:`` line of its docstring). FLOPs are ``torch.utils.flop_counter``'s:
matmuls, convolutions and SDPA (element-wise work is not counted).

    python tools/op_table.py            # print the table
    python tools/op_table.py --write    # rewrite it in README.md between the OP-TABLE markers
    python tools/op_table.py --check    # exit 1 when README.md differs from the registry
"""
from __future__ import annotations

import argparse
import inspect
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from attn_ops import ATTENTION  # noqa: E402
from attn_ops.layouts import example_input  # noqa: E402
from tools.benchmark_ops import example_module, flops  # noqa: E402

BEGIN, END = '<!-- OP-TABLE:BEGIN (python tools/op_table.py --write) -->', '<!-- OP-TABLE:END -->'
REF_DIM, REF_TOKENS = 64, 1024      # reference size: C = 64, N = 1024 tokens (a 32 x 32 map), batch 1
HEADER = ('| op | family | layout | kind | mask | weights | paper | time in N | params | MFLOPs | catalogue |\n'
          '|---|---|---|---|---|---|---|---|---|---|---|\n')


def signature(cls) -> str:
    """``Name(dim, a=1, b=2)``: the constructor's positional arguments with their defaults."""
    parts = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind is not p.POSITIONAL_OR_KEYWORD:
            break
        parts.append(p.name if p.default is p.empty else f'{p.name}={p.default!r}')
    return f'{cls.__name__}({", ".join(parts)})'


def cost(cls) -> tuple[int, float]:
    """(parameters, forward MFLOPs) at the reference size."""
    torch.manual_seed(0)
    op = ATTENTION.build(dict(type=cls.__name__, dim=REF_DIM)).eval()
    x = example_input(cls.layout, REF_DIM, batch=1, tokens=REF_TOKENS)
    return sum(p.numel() for p in op.parameters()), flops(example_module(op, x), (x,)) / 1e6


def row(name: str) -> str:
    cls = ATTENTION.get(name)
    params, mflops = cost(cls)
    family = cls.__module__.rsplit('.', 1)[-1]
    cells = [f'`{signature(cls)}`', family, cls.layout, cls.kind, 'yes' if cls.supports_mask else '-',
             cls.attn_form or '-', cls.paper, cls.complexity, f'{params:,}', f'{mflops:,.1f}',
             cls.catalogue_status().replace('|', '\\|')]
    return '| ' + ' | '.join(cells) + ' |\n'


def table() -> str:
    intro = (f'Parameters and forward MFLOPs at C = {REF_DIM}, N = {REF_TOKENS} tokens (a 32 x 32 map), '
             'batch 1. "weights": what `return_attn=True` returns (see the contract).\n\n')
    return intro + HEADER + ''.join(row(n) for n in sorted(ATTENTION.module_dict))


def readme_block(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f'README.md has no op-table markers: add a line "{BEGIN}" and a line "{END}"')
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip('\n') + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--write', action='store_true', help='rewrite the table in README.md')
    p.add_argument('--check', action='store_true', help='exit 1 when README.md is stale')
    p.add_argument('--readme', default=osp.join(ROOT, 'README.md'))
    opts = p.parse_args(argv)
    current = table()
    if not (opts.write or opts.check):
        print(current, end='')
        return 0
    with open(opts.readme) as f:
        text = f.read()
    if opts.check:
        stale = readme_block(text) != current
        print(f'{opts.readme}: op table {"is stale: run python tools/op_table.py --write" if stale else "is current"}')
        return int(stale)
    head, rest = text.split(BEGIN, 1)
    with open(opts.readme, 'w') as f:
        f.write(head + BEGIN + '\n' + current + END + rest.split(END, 1)[1])
    print(f'wrote the op table ({len(ATTENTION.module_dict)} ops) to {opts.readme}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
