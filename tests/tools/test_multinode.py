"""Past one machine on CPU: tools/dist_train.sh and tools/dist_test.sh as two "nodes" on localhost
(NNODES=2, one gloo process each) give the weights and metrics of one process on the same global
batch; tools/slurm_*.sh start the tools through srun with mmengine's slurm launcher."""
import json
import os
import os.path as osp
import socket
import stat
import subprocess
import sys

import pytest
import torch

from projects.compat.checkpoint import install as install_checkpoint_allowlist, load_checkpoint_file
from tests.tools.helpers import ROOT, SEG_CONFIG as CONFIG, run_tool

install_checkpoint_allowlist()

# Deterministic and batch-size invariant, so that 2 x 2 samples on two ranks equal 4 samples on
# one: no flip, no dropout, GroupNorm (BatchNorm statistics are per process; SyncBN needs CUDA),
# plain SGD (its update is linear in the averaged gradient).
GN = [f'model.{m}.norm_cfg.{k}' for m in ('backbone', 'decode_head', 'auxiliary_head')
      for k in ('type=GN', 'num_groups=8')]
MODEL = ['model.data_preprocessor.size=(32,32)', *GN]
TRAIN = ['train_cfg.max_iters=3', 'train_cfg.val_interval=1000', 'default_hooks.checkpoint.interval=1',
         'default_hooks.checkpoint.max_keep_ckpts=3', 'default_hooks.logger.interval=1',
         'train_dataloader.dataset.pipeline.2.prob=0.0', 'model.decode_head.dropout_ratio=0.0',
         'model.auxiliary_head.dropout_ratio=0.0', 'optim_wrapper.optimizer.type=SGD',
         'optim_wrapper.optimizer.lr=0.01', 'optim_wrapper.optimizer.momentum=0.9']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _env(**extra):
    return dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable, OMP_NUM_THREADS='1', **extra)


def _check(proc, what):
    assert proc.returncode == 0, f'{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc.stdout + proc.stderr


def two_nodes(script: str, args: list, tmp_path) -> str:
    """Run ``tools/<script>`` as node 0 and node 1 of a 2-node job on localhost; return node 0's log."""
    port = str(free_port())
    procs = [subprocess.Popen(['bash', osp.join(ROOT, 'tools', script), *args], cwd=tmp_path,
                              env=_env(NNODES='2', NODE_RANK=str(rank), MASTER_ADDR='127.0.0.1', PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    logs = []
    for rank, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        p.stdout, p.stderr = out, err
        logs.append(_check(p, f'{script} node {rank}'))
    assert 'rank 0 of 2' in logs[0] and 'rank 1 of 2' in logs[1]
    return logs[0]


def one_process(tool: str, args: list, tmp_path) -> str:
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), *args], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=300)
    return _check(proc, tool)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes')
    one_process('generate_demo_data.py', ['--out', str(out), '--num-train', '8', '--num-val', '4',
                                          '--size', '32', '--seed', '1', '--quiet'], out)
    return str(out)


def _weights(path):
    return {k: v for k, v in load_checkpoint_file(path)['state_dict'].items() if v.is_floating_point()}


@pytest.mark.e2e
@pytest.mark.slow
def test_two_nodes_train_and_test_like_one_process(tmp_path, data_root):
    data = [f'{k}.dataset.data_root={data_root}' for k in ('test_dataloader', 'train_dataloader', 'val_dataloader')]
    cfg = osp.join(ROOT, CONFIG)
    ddp, single = str(tmp_path / 'ddp'), str(tmp_path / 'single')
    two_nodes('dist_train.sh', [cfg, '1', '--work-dir', ddp, '--cfg-options', *data, *MODEL, *TRAIN,
                                'train_dataloader.batch_size=2'], tmp_path)
    run_tool('train.py', [cfg, '--work-dir', single, '--cfg-options', *data, *MODEL, *TRAIN,
                            'train_dataloader.batch_size=4'])
    a, b = _weights(osp.join(ddp, 'iter_3.pth')), _weights(osp.join(single, 'iter_3.pth'))
    assert a.keys() == b.keys()
    moved = max((a[k] - v).abs().max().item() for k, v in _weights(osp.join(single, 'iter_1.pth')).items())
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-3 and diff < 1e-6, (moved, diff)  # training moved the weights; both runs agree

    ckpt = osp.join(ddp, 'iter_3.pth')
    test_opts = ['--cfg-options', data[0], *MODEL]
    log = two_nodes('dist_test.sh', [cfg, ckpt, '1', '--work-dir', str(tmp_path / 'ddp_test'), *test_opts],
                    tmp_path)
    assert 'per class results' in log
    run_tool('test.py', [cfg, ckpt, '--work-dir', str(tmp_path / 'single_test'), *test_opts])
    metrics = [json.load(open(tmp_path / d / 'test_metrics.json')) for d in ('ddp_test', 'single_test')]
    assert set(metrics[0]) >= {'mIoU', 'mAcc', 'aAcc'} and metrics[0] == metrics[1]


def fake_slurm(tmp_path) -> str:
    """A ``bin`` folder with ``srun`` (records its options, then starts the command once per task
    with slurm's variables) and ``scontrol show hostname`` (prints localhost)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text('''#!/usr/bin/env bash
echo "$@" > "$SRUN_LOG"
n=1
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do
    case $1 in --ntasks=*) n=${1#*=} ;; -p) shift ;; esac
    shift
done
[ -n "$SRUN_DRY" ] && exit 0
for ((i = 0; i < n; i++)); do
    SLURM_PROCID=$i SLURM_NTASKS=$n SLURM_LOCALID=$i SLURM_NODELIST=localhost "$@" &
done
rc=0
for job in $(jobs -p); do wait "$job" || rc=1; done
exit $rc
''')
    (bin_dir / 'scontrol').write_text('#!/usr/bin/env bash\necho 127.0.0.1\n')
    for f in ('srun', 'scontrol'):
        (bin_dir / f).chmod((bin_dir / f).stat().st_mode | stat.S_IEXEC)
    return str(bin_dir)


@pytest.mark.e2e
def test_slurm_scripts_launch_through_srun(tmp_path, data_root):
    bin_dir, srun_log = fake_slurm(tmp_path), str(tmp_path / 'srun_args.txt')
    cfg = osp.join(ROOT, CONFIG)
    path = bin_dir + os.pathsep + os.environ['PATH']
    # slurm_train.sh: the srun command line (dry)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools/slurm_train.sh'), 'dev', 'eanet', cfg, '--work-dir', 'w'],
                          env=_env(PATH=path, SRUN_LOG=srun_log, SRUN_DRY='1', GPUS='16', GPUS_PER_NODE='8'),
                          capture_output=True, text=True, timeout=60)
    _check(proc, 'slurm_train.sh')
    args = open(srun_log).read().split()
    assert args[:2] == ['-p', 'dev'] and '--job-name=eanet' in args and '--ntasks=16' in args
    assert '--ntasks-per-node=8' in args and '--gres=gpu:8' in args
    assert args[-5:] == [cfg, '--launcher', 'slurm', '--work-dir', 'w']
    assert args[-6].endswith('tools/train.py')
    # slurm_test.sh: a real one-task run through mmengine's slurm launcher (gloo on CPU)
    ckpt = tmp_path / 'random.pth'
    from projects.runtime import build_model, load_config
    gn = {f'model.{m}.norm_cfg': dict(type='GN', num_groups=8) for m in ('backbone', 'decode_head', 'auxiliary_head')}
    model = build_model(load_config(cfg, gn))
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools/slurm_test.sh'), 'dev', 'eval', cfg, str(ckpt),
                           '--work-dir', 'slurm_test', '--cfg-options', f'test_dataloader.dataset.data_root={data_root}',
                           *MODEL],
                          env=_env(PATH=path, SRUN_LOG=srun_log, GPUS='1', GPUS_PER_NODE='1',
                                   MASTER_PORT=str(free_port())),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    log = _check(proc, 'slurm_test.sh')
    assert 'backend gloo, rank 0 of 1' in log
    assert set(json.load(open(tmp_path / 'slurm_test' / 'test_metrics.json'))) >= {'mIoU', 'aAcc'}
