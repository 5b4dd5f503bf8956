"""Point-cloud datasets (DATASETS, scope ``pointcloud``), read from standard layouts on disk."""
from .base import PointCloudDataset  # noqa: F401
from .hdf5 import read_h5_clouds  # noqa: F401
from .modelnet40 import ModelNet40Dataset, ModelNet40NormalDataset  # noqa: F401
from .s3dis import S3DIS_CLASSES, S3DISDataset  # noqa: F401
from .shapenet_part import SHAPENETPART_PARTS, ShapeNetPartDataset  # noqa: F401
from .synthetic import CATEGORY_PARTS as SYNTHETIC_CATEGORY_PARTS  # noqa: F401
from .synthetic import SyntheticPrimitives  # noqa: F401

NAMED_CATEGORY_PARTS = {'ShapeNetPart': list(SHAPENETPART_PARTS.values()),
                        'SyntheticPrimitives': SYNTHETIC_CATEGORY_PARTS}


def resolve_category_parts(category_parts):
    """A dataset name (``'ShapeNetPart'``, ``'SyntheticPrimitives'``) -> its per-category part ids;
    an explicit list is returned as given."""
    if isinstance(category_parts, str):
        if category_parts not in NAMED_CATEGORY_PARTS:
            raise ValueError(f'category_parts: unknown name {category_parts!r}; known: '
                             f'{sorted(NAMED_CATEGORY_PARTS)} (or give the list of part ids per category)')
        return NAMED_CATEGORY_PARTS[category_parts]
    return category_parts
