"""What the tool tests share: loading a tool as a module, tiny data, untrained checkpoints."""
from __future__ import annotations

import importlib.util
import os.path as osp
import sys

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_CONFIG = 'configs/eanet/eanet_r18-d8_1xb8-1k_demo-shapes-64x64.py'
CLS_CONFIG = 'configs/pct/pct-tiny_1xb16-8e_synthetic-primitives-256.py'
PART_CONFIG = 'configs/pct/pct-tiny_1xb16-10e_synthetic-parts-256.py'


def load_tool(path: str):
    """The module of ``tools/<path>`` (its ``main(argv)`` runs the tool in this process)."""
    name = 'tool_' + path.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'tools', path))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def run_tool(path: str, argv: list[str]):
    """``tools/<path>``'s ``main(argv)`` in this process, as its own run: mmengine's named
    singletons (the visualizer of an earlier runner keeps that run's log dir) are forgotten first."""
    from mmengine.visualization import Visualizer
    classes = [Visualizer]
    while classes:
        cls = classes.pop()
        cls._instance_dict.clear()
        classes += cls.__subclasses__()
    return load_tool(path).main(argv)


def demo_shapes(out: str, num_train: int = 4, num_val: int = 2, size: int = 32) -> str:
    """A tiny DemoShapes dataset (ADE20K layout) under ``out``."""
    import projects.segmentation  # noqa: F401
    from projects.segmentation.demo_shapes import generate
    return generate(str(out), num_train, num_val, size, seed=1)


def untrained_checkpoint(config: str, path: str, cfg_options: dict | None = None, seed: int = 0) -> str:
    """Save the config's model at initialisation, its BatchNorm statistics measured on two test
    samples, so that predictions vary over the input as a trained model's do (BatchNorm at its
    initial statistics makes them constant). Returns ``path``."""
    from projects.runtime import build_collate, build_dataset, build_model, load_config
    cfg = load_config(osp.join(ROOT, config), cfg_options)
    torch.manual_seed(seed)
    model = build_model(cfg)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    dataset, collate = build_dataset(cfg, 'test'), build_collate(cfg, 'test')
    data = model.data_preprocessor(collate([dataset[0], dataset[1]]), False)
    model.train()
    with torch.no_grad():
        model(data['inputs'], data.get('data_samples'), mode='tensor')
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return path


def png_is_drawn(path: str) -> bool:
    """A picture with real content: not one flat colour."""
    from PIL import Image
    img = np.asarray(Image.open(path).convert('RGB'), np.float32)
    return img.std() > 5 and len(np.unique(img.reshape(-1, 3), axis=0)) > 8
