"""Keep the README true: every registered op is in the op table, every path it names exists."""
import re
from pathlib import Path

from attn_ops import ATTENTION

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()


def test_op_table_lists_every_registered_op():
    table = README.split('### Op table', 1)[1].split('\n\n', 2)[1]
    listed = set(re.findall(r'^\| `(\w+)\(', table, flags=re.M))
    assert listed == set(ATTENTION.module_dict), (
        f'missing from README: {set(ATTENTION.module_dict) - listed}; stale: {listed - set(ATTENTION.module_dict)}')
    for name in listed:
        row = next(line for line in table.splitlines() if line.startswith(f'| `{name}('))
        assert f'| {ATTENTION.get(name).layout} |' in row, f'{name}: README layout differs from op.layout'


def test_paths_named_in_readme_exist():
    paths = set(re.findall(r'\b((?:tools|configs|projects|attn_ops|tests)/[\w./-]+\.(?:py|md|png|json|txt))', README))
    assert paths, 'README names no paths?'
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f'README names files that do not exist: {missing}'


def test_two_setup_commands_and_ci():
    assert '```bash\nmake demo' in README and '\nmake test ' in README
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()
