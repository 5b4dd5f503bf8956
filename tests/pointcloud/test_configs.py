"""Every config of configs/pct parses and builds its model in the point-cloud scope."""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import projects.pointcloud  # noqa: F401
from projects.pointcloud.registry import MODELS

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / 'configs' / 'pct').glob('*.py'))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.name)
def test_config_builds_model(path):
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'pointcloud'
    assert cfg.custom_imports['imports'] == ['projects.pointcloud']
    assert cfg.train_dataloader.collate_fn.type == 'pointcloud_collate'
    with DefaultScope.overwrite_default_scope('pointcloud'):
        model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    if path.name.startswith('pct_1xb32-250e_modelnet40'):
        assert sum(p.numel() for p in model.parameters()) == 2876136
        assert cfg.optim_wrapper.optimizer.lr == 0.01 and cfg.train_cfg.max_epochs == 250
        assert cfg.model.label_smoothing == 0.2 and cfg.train_dataloader.batch_size == 32


def test_ea_variant_uses_external_attention():
    cfg = Config.fromfile(str(next(p for p in CONFIGS if p.name.startswith('pct-ea_'))))
    with DefaultScope.overwrite_default_scope('pointcloud'):
        model = MODELS.build(cfg.model)
    names = {type(layer.attn).__name__ for layer in model.encoder.layers}
    assert names == {'ExternalAttention'}
