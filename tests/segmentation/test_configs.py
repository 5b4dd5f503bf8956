"""Every segmentation config loads with Config.fromfile and its model builds from the registries."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import projects.segmentation  # noqa: F401
from attn_ops import ATTENTION

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'eanet', '*.py'))
                 + glob.glob(osp.join(ROOT, 'configs', 'attn_head', '*.py')))


def test_configs_exist_for_every_recipe_and_every_op():
    names = {osp.basename(c) for c in CONFIGS}
    for depth in (50, 101):
        assert f'eanet_r{depth}-d8_4xb2-80k_cityscapes-512x1024.py' in names
        assert f'eanet_r{depth}-d8_4xb4-160k_ade20k-512x512.py' in names
        assert f'eanet_r{depth}-d8_4xb4-40k_voc12aug-512x512.py' in names
    ops = {Config.fromfile(c).model.decode_head.attn.type for c in CONFIGS if '/attn_head/' in c}
    # pool ops (map or tokens -> one vector) cannot stand in a decode head: AttnHead refuses them
    assert ops == {n for n in ATTENTION.module_dict if ATTENTION.get(n).kind != 'pool'}


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmseg'
    assert 'projects.segmentation' in cfg.custom_imports['imports']
    assert cfg.val_dataloader.dataset.data_root.startswith('data/')
    num_classes = cfg.model.decode_head.num_classes
    expected = {'cityscapes': 19, 'ade20k': 150, 'voc12aug': 21, 'demo-shapes': 4}
    assert num_classes == next(v for k, v in expected.items() if k in path)
    cfg.model.pretrained = None  # weights are not needed to check the structure
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import MODELS
        if 'r101' in path:  # same head as r50: check the depth, skip the expensive build
            assert cfg.model.backbone.depth == 101
            return
        if '/attn_head/' in path:  # one backbone for all: build the head, where the op differs
            head = MODELS.build(cfg.model.decode_head)
        else:
            model = MODELS.build(cfg.model)
            head = model.decode_head
    assert type(head).__name__ == cfg.model.decode_head.type
    op = getattr(head.attn.op, 'op', head.attn.op)          # through the layout adapter
    assert type(op).__name__ == cfg.model.decode_head.attn.type
    if 'demo-shapes' in path:  # small enough to run
        model.eval()
        with torch.no_grad():
            out = model(torch.rand(1, 3, 64, 64), mode='tensor')
        assert out.shape == (1, 4, 8, 8)


def test_published_recipe_values():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/eanet/eanet_r101-d8_4xb4-160k_ade20k-512x512.py'))
    assert cfg.model.pretrained == 'open-mmlab://resnet101_v1c'
    assert cfg.model.backbone.depth == 101 and cfg.model.backbone.strides == (1, 2, 1, 1)
    assert cfg.model.decode_head.attn == dict(type='ExternalAttentionBlock', k=64)
    assert cfg.model.decode_head.ea_channels == 512 and cfg.model.decode_head.channels == 256
    assert cfg.model.decode_head.in_channels == 2048
    assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size == 4
    assert cfg.crop_size == (512, 512) and cfg.data_preprocessor.size == (512, 512)
    assert cfg.model.data_preprocessor.size == (512, 512)
    cfg = Config.fromfile(osp.join(ROOT, 'configs/eanet/eanet_r50-d8_4xb2-80k_cityscapes-512x1024.py'))
    assert cfg.train_cfg.max_iters == 80000 and cfg.train_dataloader.batch_size == 2
    assert cfg.model.data_preprocessor.size == (512, 1024)
    assert cfg.optim_wrapper.optimizer.lr == 0.01 and cfg.param_scheduler[0].power == 0.9
