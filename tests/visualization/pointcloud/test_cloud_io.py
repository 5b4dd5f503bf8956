"""projects/pointcloud/visualization/cloud_io.py: reading clouds (HDF5 through the dataset reader), PLY out."""
import numpy as np
import pytest

from projects.colors import class_palette, colorize
from projects.pointcloud.datasets import ModelNet40Dataset
from projects.pointcloud.visualization import check_cloud, read_cloud, read_labels, write_ply
from tests.visualization.helpers import parse_ply, rgb_of

h5py = pytest.importorskip('h5py')


def _modelnet40(root, counts=(3, 2), points=50):
    """A tiny ``modelnet40_ply_hdf5_2048`` folder: ``label`` stored (B, 1) uint8 as in the release."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for i, n in enumerate(counts):
        with h5py.File(root / f'ply_data_train{i}.h5', 'w') as f:
            f['data'] = rng.normal(size=(n, points, 3)).astype(np.float32)
            f['label'] = (np.arange(n, dtype=np.uint8) * 3 + i).reshape(n, 1)
    (root / 'shape_names.txt').write_text('\n'.join(f'c{i}' for i in range(40)))
    return root


def test_hdf5_read_by_the_visualizer_is_the_dataset_loaders_sample(tmp_path):
    root = _modelnet40(tmp_path / 'modelnet40_ply_hdf5_2048')
    ds = ModelNet40Dataset(str(root), 'train')
    files = [root / 'ply_data_train0.h5'] * 3 + [root / 'ply_data_train1.h5'] * 2
    for i, (fn, k) in enumerate(zip(files, [0, 1, 2, 0, 1])):
        sample, cloud = ds.get_sample(i), read_cloud(str(fn), index=k)
        np.testing.assert_array_equal(cloud['points'], sample['pos'])
        assert cloud['labels'].tolist() == [sample['label']] and cloud['colors'] is None


def test_read_cloud_formats(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3, 50, 3)).astype(np.float32)
    # ShapeNetPart HDF5 (hdf5_data): part labels win over the class label
    with h5py.File(tmp_path / 'part.h5', 'w') as f:
        f['data'] = data
        f['label'] = np.array([[0], [1], [2]])
        f['pid'] = np.arange(150).reshape(3, 50) % 4
    cloud = read_cloud(str(tmp_path / 'part.h5'), index=2)
    np.testing.assert_array_equal(cloud['points'], data[2])
    np.testing.assert_array_equal(cloud['labels'], np.arange(100, 150) % 4)
    with pytest.raises(ValueError, match='holds 3 clouds .*; choose one with --index'):
        read_cloud(str(tmp_path / 'part.h5'))
    with pytest.raises(IndexError, match='index 3 out of range: .*part.h5 holds 3 clouds'):
        read_cloud(str(tmp_path / 'part.h5'), index=3)

    # ShapeNetPart text layout: x y z nx ny nz part
    table = np.c_[data[0], data[0], np.arange(50) % 3]
    np.savetxt(tmp_path / 'shape.txt', table)
    cloud = read_cloud(str(tmp_path / 'shape.txt'), label_column=-1)
    np.testing.assert_allclose(cloud['points'], data[0], rtol=1e-6)
    np.testing.assert_array_equal(cloud['labels'], np.arange(50) % 3)
    np.savetxt(tmp_path / 'comma.xyz', data[1], delimiter=',')  # ModelNet40 normal_resampled uses commas
    np.testing.assert_allclose(read_cloud(str(tmp_path / 'comma.xyz'))['points'], data[1], rtol=1e-6)

    np.save(tmp_path / 'batch.npy', data)
    np.testing.assert_array_equal(read_cloud(str(tmp_path / 'batch.npy'), index=1)['points'], data[1])
    with pytest.raises(IndexError, match='--index 5 out of range: .*batch.npy holds 3 clouds'):
        read_cloud(str(tmp_path / 'batch.npy'), index=5)
    np.savez(tmp_path / 'cloud.npz', pos=data[0], seg=np.arange(50) % 2)
    cloud = read_cloud(str(tmp_path / 'cloud.npz'))
    np.testing.assert_array_equal(cloud['labels'], np.arange(50) % 2)
    np.savez(tmp_path / 'nothing.npz', normals=data[0])
    with pytest.raises(KeyError, match=r"no points/pos/data/xyz array \(arrays: \['normals'\]\)"):
        read_cloud(str(tmp_path / 'nothing.npz'))

    with pytest.raises(FileNotFoundError, match='point cloud file not found: .*nope.ply'):
        read_cloud(str(tmp_path / 'nope.ply'))
    (tmp_path / 'bad.txt').write_text('1 2 3\n4 five 6\n')
    with pytest.raises(ValueError, match='bad.txt: not a table of numbers'):
        read_cloud(str(tmp_path / 'bad.txt'))
    (tmp_path / 'x.obj').write_text('v 0 0 0\n')
    with pytest.raises(ValueError, match="unknown point-cloud suffix '.obj'"):
        read_cloud(str(tmp_path / 'x.obj'))


def test_read_labels(tmp_path):
    (tmp_path / 'labels.txt').write_text('0\n3\n2\n')
    assert read_labels(str(tmp_path / 'labels.txt')).tolist() == [0, 3, 2]
    np.save(tmp_path / 'labels.npy', np.array([[1, 2]]))
    assert read_labels(str(tmp_path / 'labels.npy')).tolist() == [1, 2]
    (tmp_path / 'frac.txt').write_text('0\n1.5\n')
    with pytest.raises(ValueError, match='frac.txt: labels must be integers'):
        read_labels(str(tmp_path / 'frac.txt'))
    with pytest.raises(FileNotFoundError, match='label file not found: .*none.txt'):
        read_labels(str(tmp_path / 'none.txt'))


def test_ply_round_trip(tmp_path, two_blobs):
    from projects.compat.open3d import import_open3d
    pts, labels = two_blobs
    colors = colorize(labels, class_palette(2))
    path = write_ply(str(tmp_path / 'cloud.ply'), pts, colors, labels)

    rec = parse_ply(path)
    np.testing.assert_array_equal(np.stack([rec['x'], rec['y'], rec['z']], 1), pts)
    np.testing.assert_array_equal(rgb_of(rec), colors)
    np.testing.assert_array_equal(rec['label'], labels)

    o3d = import_open3d()
    cloud = o3d.io.read_point_cloud(path)
    np.testing.assert_allclose(np.asarray(cloud.points), pts, rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(cloud.colors) * 255, colors, atol=1e-6)
    # and back through read_cloud
    back = read_cloud(path)
    np.testing.assert_array_equal(back['points'], pts)
    np.testing.assert_array_equal(back['colors'], colors)
    with pytest.raises(ValueError, match='labels has 3 entries for 200 points'):
        write_ply(str(tmp_path / 'bad.ply'), pts, labels=labels[:3])


def test_check_cloud():
    pts, cols = check_cloud(np.zeros((2, 3), np.float32), np.array([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]]))
    assert pts.dtype == np.float64 and cols.dtype == np.uint8
    assert cols.tolist() == [[0, 128, 255], [255, 255, 255]]   # 0-1 floats scaled to 0-255
    with pytest.raises(ValueError, match=r'points must be \(N, 3\), got shape \(2, 2\)'):
        check_cloud(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r'colors must be \(N, 3\) like points \(2, 3\), got \(3, 3\)'):
        check_cloud(np.zeros((2, 3)), np.zeros((3, 3)))
