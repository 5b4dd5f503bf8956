"""Registries of the point-cloud project (scope ``pointcloud``).

Each is a child of mmengine's root registry of the same name, so configs with
``default_scope='pointcloud'`` build from here and fall back to mmengine's components
(optimizers, hooks, ...); ``locations`` lets the Runner import the modules on demand.
Attention layers come from :data:`attn_ops.ATTENTION` (a child of mmengine ``MODELS``).
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='pointcloud',
                  locations=['projects.pointcloud.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='pointcloud',
                    locations=['projects.pointcloud.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='pointcloud',
                      locations=['projects.pointcloud.transforms'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='pointcloud',
                   locations=['projects.pointcloud.metrics'])

__all__ = ['MODELS', 'DATASETS', 'TRANSFORMS', 'METRICS']
