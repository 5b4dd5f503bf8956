"""Every example of the README's Tools table runs as written, in order, as a user after
``make demo`` would run it: in a sandbox holding the repository's configs, tiny demo data and
untrained checkpoints at the demo's paths. Arguments appended per tool only shrink the work."""
from __future__ import annotations

import json
import os
import re
import shlex

import numpy as np
import pytest
import torch

from tests.tools.helpers import (CLS_CONFIG, ROOT, SEG_CONFIG, demo_shapes, png_is_drawn, run_tool,
                                 untrained_checkpoint)

SEG_CKPT = 'work_dirs/eanet_r18-d8_1xb8-1k_demo-shapes-64x64/iter_1000.pth'
CLS_CKPT = 'work_dirs/pct-tiny_1xb16-8e_synthetic-primitives-256/epoch_8.pth'


def readme_examples() -> list[list[str]]:
    """The example commands of the Tools table, split into arguments (``python`` dropped)."""
    text = open(os.path.join(ROOT, 'README.md')).read()
    table = text.split('<!-- TOOLS-TABLE', 1)[1].split('\n\n', 1)[0]
    commands = [re.findall(r'`([^`]+)`', line)[-1] for line in table.splitlines()[3:]]
    assert commands and all(c.startswith('python tools/') for c in commands), commands
    return [shlex.split(c)[1:] for c in commands]


def shrink(argv: list[str]) -> list[str]:
    """Extra arguments (the last occurrence wins in argparse) that make an example tiny."""
    tool, config = argv[0], (argv[1] if len(argv) > 1 else '')
    if tool == 'tools/train.py':
        return ['--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1']
    if tool == 'tools/test.py' and config.startswith('configs/pct'):
        return ['--cfg-options', 'test_dataloader.dataset.num_samples=8']
    return {'tools/analysis_tools/browse_dataset.py': ['--num', '3'],
            'tools/visualize_segmentation.py': ['--num', '2'],
            'tools/benchmark_ops.py': ['--ops', 'ExternalAttention', '--no-peer'],
            'tools/generate_demo_data.py': ['--num-train', '4', '--num-val', '2']}.get(tool, [])


# outputs each example leaves in the sandbox: (path, check)
OUTPUTS = {
    'tools/train.py': [('work_dirs/eanet_r18-d8_1xb8-1k_demo-shapes-64x64/iter_2.pth', None)],
    'tools/test.py': [('work_dirs/eanet_demo_pred/00001.png', None), ('work_dirs/eanet_demo_pred/metrics.json', None),
                      ('work_dirs/pct_demo_pred/00007.npz', None), ('work_dirs/pct_demo_pred/metrics.json', None)],
    'tools/misc/print_config.py': [],            # prints only
    'tools/analysis_tools/get_flops.py': [],     # prints only
    'tools/analysis_tools/confusion_matrix.py': [('work_dirs/eanet_demo_confusion.png', png_is_drawn),
                                                 ('work_dirs/eanet_demo_confusion.csv', None)],
    'tools/analysis_tools/browse_dataset.py': [('work_dirs/browse_parts/contact_sheet.png', png_is_drawn)],
    'tools/visualize_pointcloud.py': [('work_dirs/vis_pred/00003.png', png_is_drawn)],
    'tools/visualize_segmentation.py': [('work_dirs/vis_seg', None)],
    'tools/visualize_attention.py': [('work_dirs/vis_attn/units_l0_h0.png', png_is_drawn)],
    'tools/analyze_logs.py': [('work_dirs/eanet_demo_curves.png', png_is_drawn)],
    'tools/benchmark_ops.py': [('work_dirs/benchmark_ops/results.md', None)],
    'tools/benchmark_models.py': [('work_dirs/benchmark_models/point_ops.png', png_is_drawn)],
    'tools/leaderboard.py': [('work_dirs/leaderboard_quick/results.csv', None),
                             ('work_dirs/leaderboard_quick/pareto_seg.png', png_is_drawn)],
    'tools/generate_demo_data.py': [('data/demo_shapes/images/validation/00001.png', None)],
    'tools/dataset_converters/s3dis.py': [('data/s3dis/Area_1_office_1.npy', None)],
    'tools/model_converters/pct_pytorch.py': [('pct_modelnet40.pth', None)],
}


@pytest.fixture(scope='module')
def sandbox(tmp_path_factory):
    """A working directory as after ``make demo``: configs, data/demo_shapes (tiny), the demo
    checkpoints (untrained, BatchNorm calibrated), an S3DIS folder and a PCT_Pytorch checkpoint."""
    box = tmp_path_factory.mktemp('repo')
    os.symlink(os.path.join(ROOT, 'configs'), box / 'configs')
    data = demo_shapes(box / 'data' / 'demo_shapes', num_train=4, num_val=2, size=64)
    for config, ckpt, opts in ((SEG_CONFIG, SEG_CKPT, {'test_dataloader.dataset.data_root': data}),
                               (CLS_CONFIG, CLS_CKPT, None)):
        os.makedirs(box / os.path.dirname(ckpt))
        untrained_checkpoint(config, str(box / ckpt), opts)
    rng = np.random.RandomState(0)
    for area, room in [(1, 'office_1'), (5, 'hallway_1')]:
        ann = box / 'data' / 'Stanford3dDataset_v1.2_Aligned_Version' / f'Area_{area}' / room / 'Annotations'
        ann.mkdir(parents=True)
        np.savetxt(ann / 'table_1.txt', rng.rand(30, 6) * 5)
    keys = json.load(open(os.path.join(ROOT, 'tests', 'pointcloud', 'pct_pytorch_keys.json')))['keys']
    torch.save({k: torch.zeros(shape) for k, shape in keys}, box / 'model.t7')
    cwd = os.getcwd()
    os.chdir(box)
    yield box
    os.chdir(cwd)


def test_table_covers_the_tools():
    tools = {argv[0] for argv in readme_examples()}
    assert tools == set(OUTPUTS), f'README rows without a check: {tools - set(OUTPUTS)}; ' \
                                  f'checks without a README row: {set(OUTPUTS) - tools}'
    assert all(os.path.isfile(os.path.join(ROOT, t)) for t in tools)


def test_every_example_runs(sandbox):
    for argv in readme_examples():
        tool = argv[0]
        try:
            run_tool(tool[len('tools/'):], [*argv[1:], *shrink(argv)])
        except SystemExit as err:  # argparse errors
            raise AssertionError(f'README example failed: python {" ".join(argv)}: exit {err.code}') from err
    for tool, outputs in OUTPUTS.items():
        for path, check in outputs:
            assert (sandbox / path).exists(), f'{tool}: {path} not written'
            assert check is None or check(str(sandbox / path)), f'{tool}: {path} is blank'
    assert set(json.load(open(sandbox / 'work_dirs/pct_demo_pred/metrics.json'))) >= {'OA', 'mAcc'}
    assert set(json.load(open(sandbox / 'work_dirs/eanet_demo_pred/metrics.json'))) >= {'mIoU', 'aAcc'}
