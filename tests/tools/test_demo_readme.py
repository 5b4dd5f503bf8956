"""The README's demo figures are generated from tools/assets/demo_metrics.json, the metrics file
``make demo`` writes (``work_dirs/demo/metrics.json``, compared with the committed one at the end
of every demo run); the README block must be exactly what that file renders to."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def demo():
    spec = importlib.util.spec_from_file_location('demo_tool', ROOT / 'tools' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_demo_figures_are_the_committed_metrics(demo):
    metrics = json.loads((ROOT / 'tools' / 'assets' / 'demo_metrics.json').read_text())
    assert set(metrics) == set(demo.HEADLINES), 'the committed metrics must hold every demo run'
    readme = (ROOT / 'README.md').read_text()
    start, end = readme.index(demo.BEGIN), readme.index(demo.END) + len(demo.END)
    assert readme[start:end] == demo.readme_block(metrics), (
        'README demo figures differ from tools/assets/demo_metrics.json: run make demo, then '
        'python tools/demo.py --update-readme')
    for run, (_, keys) in demo.HEADLINES.items():  # every headline value is in the README, as written
        for key in keys:
            assert f'{key} {metrics[run][key]:.4g}' in readme[start:end], (run, key)


def test_update_readme_rewrites_only_the_block(demo, tmp_path, monkeypatch):
    readme = tmp_path / 'README.md'
    readme.write_text(f'before\n{demo.BEGIN} old -->\nold figures\n{demo.END}\nafter\n')
    committed = tmp_path / 'demo_metrics.json'
    work = tmp_path / 'work'
    work.mkdir()
    metrics = {'seg': {'mIoU': 12.34, 'mAcc': 50.0, 'aAcc': 90.0, 'mDice': 1.0},
               'pointcloud': {'OA': 0.5, 'mAcc': 0.25}, 'pointcloud_parts': {'ins_mIoU': 81.5, 'cls_mIoU': 80.25}}
    (work / 'metrics.json').write_text(json.dumps(metrics))
    monkeypatch.setattr(demo, 'README', readme)
    monkeypatch.setattr(demo, 'COMMITTED_METRICS', committed)
    demo.update_readme(work)
    assert json.loads(committed.read_text()) == metrics
    text = readme.read_text()
    assert text.startswith('before\n') and text.endswith('\nafter\n') and 'old figures' not in text
    assert ('EANet demo: **mIoU 12.34**, mAcc 50, aAcc 90. PCT classification demo: **OA 0.5**, mAcc 0.25. '
            'PCT part demo: **ins_mIoU 81.5**, cls_mIoU 80.25.') in text
    (work / 'metrics.json').write_text(json.dumps({'seg': metrics['seg']}))
    with pytest.raises(ValueError, match=r"lacks the runs \['pointcloud', 'pointcloud_parts'\]"):
        demo.update_readme(work)


def test_demo_writes_the_metrics_of_each_run(demo, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, 'ROOT', tmp_path)
    for run, value in (('seg', 70.0), ('pointcloud', 0.9)):
        (tmp_path / 'w' / run / 'test').mkdir(parents=True)
        (tmp_path / 'w' / run / 'test' / 'test_metrics.json').write_text(json.dumps({'m': value}))
    path = demo.write_metrics(Path('w'), {'seg': ['w/seg/test/test_metrics.json', 'w/seg/iter_1.pth'],
                                          'pc': ['w/pointcloud/test/test_metrics.json']})
    assert json.loads(path.read_text()) == {'seg': {'m': 70.0}, 'pointcloud': {'m': 0.9}}
