"""projects.progress: a bar in a terminal, nothing in a piped log or under --quiet."""
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

from tests.tools.helpers import CLS_CONFIG

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = ('import sys; from projects.progress import track, write\n'
          'quiet = "--quiet" in sys.argv\n'
          'n = sum(1 for _ in track(range(7), desc="counting", quiet=quiet))\n'
          'write(f"done {n}")\n')


def _env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))


def run_in_tty(*args: str, cwd=ROOT) -> str:
    """Run ``python ARGS`` (default: the script) with stdout and stderr on a pseudo-terminal, as in
    tmux; return what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))  # 24 rows, 100 cols
    argv = list(args) if args and args[0].endswith('.py') else ['-c', SCRIPT, *args]
    proc = subprocess.Popen([sys.executable, *argv], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, cwd=cwd, env=_env())
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = b''.join(chunks).decode(errors='replace')
    assert proc.wait(60) == 0, out[-2000:]
    return out


def test_bar_drawn_in_a_terminal():
    out = run_in_tty()
    assert 'counting' in out and '7/7' in out and '100%' in out
    assert 'done 7' in out


def test_quiet_in_a_terminal_draws_nothing():
    out = run_in_tty('--quiet')
    assert 'counting' not in out and '7/7' not in out
    assert 'done 7' in out


@pytest.mark.parametrize('stderr', [subprocess.PIPE, subprocess.STDOUT])
def test_piped_output_has_no_bar(stderr):
    res = subprocess.run([sys.executable, '-c', SCRIPT], stdout=subprocess.PIPE, stderr=stderr,
                         cwd=ROOT, env=_env(), text=True, check=True)
    assert res.stdout == 'done 7\n'
    assert not res.stderr


def _s3dis_source(root):
    for area, room in [(1, 'office_1'), (5, 'hallway_1')]:
        ann = root / f'Area_{area}' / room / 'Annotations'
        ann.mkdir(parents=True)
        np.savetxt(ann / 'chair_1.txt', np.random.RandomState(area).rand(20, 6) * 10)
    return str(root)


TOOLS = {  # tool -> (arguments for a tiny run in tmp, the bar's description)
    'generate_demo_data': (lambda tmp: ['tools/generate_demo_data.py', '--out', str(tmp / 'shapes'),
                                        '--num-train', '3', '--num-val', '2', '--size', '16'], 'demo shapes'),
    's3dis converter': (lambda tmp: ['tools/dataset_converters/s3dis.py', _s3dis_source(tmp / 'src'),
                                     str(tmp / 'dst')], 'S3DIS rooms'),
    'benchmark_ops': (lambda tmp: ['tools/benchmark_ops.py', '--ops', 'ExternalAttention', 'SelfAttention',
                                   '--tokens', '16', '--repeats', '1', '--warmup', '0', '--no-peer',
                                   '--out', str(tmp / 'bench')], 'benchmark'),
    'benchmark_models': (lambda tmp: ['tools/benchmark_models.py', '--parts', 'point_ops', '--quick',
                                      '--out', str(tmp / 'bench_models')], 'benchmark point ops'),
    'browse_dataset': (lambda tmp: ['tools/analysis_tools/browse_dataset.py', os.path.join(ROOT, CLS_CONFIG),
                                    '--num', '2', '--renderer', 'matplotlib', '--out', str(tmp / 'browse')],
                       'browse dataset'),
    'visualize_pointcloud (batch)': (lambda tmp: ['tools/visualize_pointcloud.py', '--config',
                                                  os.path.join(ROOT, CLS_CONFIG), '--num', '2', '--batch',
                                                  '--renderer', 'matplotlib', '--no-ply', '--out', str(tmp / 'vis')],
                                     'rendering'),
}


@pytest.mark.parametrize('tool', sorted(TOOLS))
def test_tools_draw_a_bar_in_a_terminal(tool, tmp_path):
    make_args, desc = TOOLS[tool]
    out = run_in_tty(*[os.path.join(ROOT, a) if a.startswith('tools/') else a for a in make_args(tmp_path)],
                     cwd=tmp_path)
    assert desc in out and '100%' in out, out[-2000:]


def test_tool_output_piped_to_a_log_has_no_bar(tmp_path):
    make_args, desc = TOOLS['s3dis converter']
    args = make_args(tmp_path)
    res = subprocess.run([sys.executable, os.path.join(ROOT, args[0]), *args[1:]], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout == f'2 rooms converted into {args[2]}\n' and res.stderr == ''
