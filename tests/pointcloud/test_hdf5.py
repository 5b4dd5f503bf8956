"""projects/pointcloud/datasets/hdf5.py: PointNet's HDF5 layout (ModelNet40, ShapeNetPart), read once for
the loaders and the visualizer."""
import numpy as np
import pytest

from projects.pointcloud.datasets import read_h5_clouds

h5py = pytest.importorskip('h5py')


def test_read_h5_clouds_shapes_and_errors(tmp_path):
    path = str(tmp_path / 'part.h5')
    data = np.random.default_rng(0).normal(size=(3, 50, 3)).astype(np.float64)
    with h5py.File(path, 'w') as f:
        f['data'] = data
        f['label'] = np.array([[0], [1], [2]], np.uint8)
        f['pid'] = np.arange(150).reshape(3, 50) % 4
    every = read_h5_clouds(path)
    assert sorted(every) == ['data', 'label', 'pid']
    assert every['data'].dtype == np.float32 and every['data'].shape == (3, 50, 3)
    assert every['label'].tolist() == [0, 1, 2] and every['pid'].dtype == np.int64
    one = read_h5_clouds(path, 2)
    np.testing.assert_array_equal(one['data'], data[2].astype(np.float32))
    assert one['label'].shape == () and int(one['label']) == 2 and one['pid'].shape == (50,)
    with pytest.raises(KeyError, match=r"Mine: .*part.h5 has no \['normal'\] dataset \(keys: \['data', 'label', 'pid'\]\)"):
        read_h5_clouds(path, require=('data', 'normal'), owner='Mine')
    with pytest.raises(IndexError, match='HDF5: index 3 out of range: .*part.h5 holds 3 clouds'):
        read_h5_clouds(path, 3)
    with pytest.raises(FileNotFoundError, match='HDF5 file not found: .*nope.h5'):
        read_h5_clouds(str(tmp_path / 'nope.h5'))


def test_read_h5_clouds_per_point_labels(tmp_path):
    """S3DIS's HDF5 keeps one label per point in ``label`` (B, N): it stays per point."""
    path = str(tmp_path / 'rooms.h5')
    with h5py.File(path, 'w') as f:
        f['data'] = np.zeros((2, 5, 9), np.float32)
        f['label'] = np.arange(10).reshape(2, 5)
    assert read_h5_clouds(path)['label'].shape == (2, 5)
    assert read_h5_clouds(path, 1)['label'].tolist() == [5, 6, 7, 8, 9]
    assert read_h5_clouds(path, 1)['data'].shape == (5, 9)
