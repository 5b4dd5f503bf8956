"""Keep the README true: every registered op is in the op table, every path it names exists."""
import re
from pathlib import Path

from attn_ops import ATTENTION

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()


def test_op_table_is_the_registrys():
    """The README's op table is what tools/op_table.py generates from the registry now."""
    from tools import op_table
    block = op_table.readme_block(README)
    listed = set(re.findall(r'^\| `(\w+)\(', block, flags=re.M))
    assert listed == set(ATTENTION.module_dict), (
        f'missing from README: {set(ATTENTION.module_dict) - listed}; stale: {listed - set(ATTENTION.module_dict)}')
    assert block == op_table.table(), 'README op table is stale: run python tools/op_table.py --write'


def test_catalogue_defects_table_lists_exactly_the_ops_that_differ():
    defects = README.split('### Catalogue defects we fixed', 1)[1].split('\n## ', 1)[0]
    listed = set(re.findall(r'^\| `(\w+)` \|', defects, flags=re.M))
    differ = {n for n in ATTENTION.module_dict if ATTENTION.get(n).catalogue_status().startswith('differs')}
    assert listed == differ, f'not in the README defects table: {differ - listed}; not differing: {listed - differ}'


def test_paths_named_in_readme_exist():
    paths = set(re.findall(r'\b((?:tools|configs|projects|attn_ops|tests)/[\w./-]+\.(?:py|md|png|json|txt))', README))
    assert paths, 'README names no paths?'
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f'README names files that do not exist: {missing}'


def test_two_setup_commands_and_ci():
    assert '```bash\nmake demo' in README and '\nmake test ' in README
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()
