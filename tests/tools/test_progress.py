"""projects.progress: a bar in a terminal, nothing in a piped log or under --quiet."""
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = ('import sys; from projects.progress import track, write\n'
          'quiet = "--quiet" in sys.argv\n'
          'n = sum(1 for _ in track(range(7), desc="counting", quiet=quiet))\n'
          'write(f"done {n}")\n')


def _env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))


def run_in_tty(*args: str) -> str:
    """Run the script with stdout and stderr on a pseudo-terminal, as in tmux; return what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))  # 24 rows, 100 cols
    proc = subprocess.Popen([sys.executable, '-c', SCRIPT, *args], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, cwd=ROOT, env=_env())
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
    assert proc.wait(60) == 0
    return b''.join(chunks).decode()


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
