"""Every dataset loader on tiny files written in its standard layout; transforms; collate."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from projects.bad_data import BadSampleError
from projects.pointcloud.datasets import (ModelNet40Dataset, ModelNet40NormalDataset, S3DISDataset,
                                          ShapeNetPartDataset, SyntheticPrimitives)
from projects.pointcloud.transforms import (FixedPoints, NormalizeUnitSphere, PackPointCloud,
                                            RandomPointDropout, RandomRotateUp, RandomScaleShift,
                                            pointcloud_collate)

ROOT = Path(__file__).resolve().parents[2]
PACK = dict(type='PackPointCloud', label_key='label')


def test_modelnet40_hdf5(tmp_path):
    h5py = pytest.importorskip('h5py')
    root = tmp_path / 'modelnet40_ply_hdf5_2048'
    root.mkdir()
    rng = np.random.RandomState(0)
    for i, n in enumerate([3, 2]):
        with h5py.File(root / f'ply_data_train{i}.h5', 'w') as f:
            f['data'] = rng.rand(n, 64, 3).astype(np.float32)
            f['label'] = np.arange(n, dtype=np.uint8).reshape(n, 1) + i
    with pytest.raises(FileNotFoundError, match='shape_names.txt'):
        ModelNet40Dataset(str(root), 'train')
    (root / 'shape_names.txt').write_text('\n'.join(f'c{i}' for i in range(40)))
    ds = ModelNet40Dataset(str(root), 'train', pipeline=[dict(type='FixedPoints', num_points=16, mode='first'), PACK])
    assert len(ds) == 5 and ds.metainfo['classes'][3] == 'c3'
    d = ds[3]
    assert d.pos.shape == (16, 3) and int(d.y) == 1
    with h5py.File(root / 'ply_data_train0.h5') as f:
        np.testing.assert_allclose(ds[0].pos.numpy(), f['data'][0][:16])
    with pytest.raises(FileNotFoundError, match='ply_data_test'):
        ModelNet40Dataset(str(root), 'test')
    with pytest.raises(FileNotFoundError, match='missing data folder: .*nowhere'):
        ModelNet40Dataset(str(tmp_path / 'nowhere'))


def test_modelnet40_normal_resampled(tmp_path):
    root = tmp_path / 'modelnet40_normal_resampled'
    (root / 'airplane').mkdir(parents=True)
    (root / 'modelnet40_shape_names.txt').write_text('airplane\nbathtub\n')
    (root / 'modelnet40_train.txt').write_text('airplane_0001\n')
    (root / 'modelnet40_test.txt').write_text('airplane_0002\n')
    pts = np.random.RandomState(1).rand(10, 6)
    np.savetxt(root / 'airplane' / 'airplane_0001.txt', pts, delimiter=',', fmt='%.6f')
    ds = ModelNet40NormalDataset(str(root), 'train', pipeline=[
        dict(type='PackPointCloud', feature_keys=('pos', 'normal'), label_key='label')])
    d = ds[0]
    assert d.x.shape == (10, 6) and int(d.y) == 0
    np.testing.assert_allclose(d.x.numpy(), pts, atol=1e-6)
    test = ModelNet40NormalDataset(str(root), 'test')
    with pytest.raises(BadSampleError, match=r'modelnet40_test.txt:1: names shape file .*airplane_0002.txt, which does not exist'):
        test[0]


def test_shapenet_part_json_split(tmp_path):
    root = tmp_path / 'shapenetcore_partanno_segmentation_benchmark_v0_normal'
    (root / 'train_test_split').mkdir(parents=True)
    (root / 'synsetoffset2category.txt').write_text('Airplane\t02691156\nBag\t02773838\n')
    for synset, token, parts in [('02691156', 'aaa', [0, 3]), ('02773838', 'bbb', [4, 5])]:
        (root / synset).mkdir()
        arr = np.random.RandomState(2).rand(12, 6)
        lab = np.array(parts * 6)[:, None]
        np.savetxt(root / synset / f'{token}.txt', np.concatenate([arr, lab], 1), fmt='%.6f')
    (root / 'train_test_split' / 'shuffled_train_file_list.json').write_text(
        json.dumps(['shape_data/02691156/aaa']))
    (root / 'train_test_split' / 'shuffled_val_file_list.json').write_text(
        json.dumps(['shape_data/02773838/bbb']))
    ds = ShapeNetPartDataset(str(root), 'trainval', pipeline=[dict(type='PackPointCloud', label_key='seg')])
    assert len(ds) == 2
    d0, d1 = ds[0], ds[1]
    assert int(d0.category) == 0 and int(d1.category) == 1
    assert sorted(set(d0.y.tolist())) == [0, 3] and d1.y.shape == (12,)
    with pytest.raises(FileNotFoundError, match='shuffled_test_file_list.json'):
        ShapeNetPartDataset(str(root), 'test')


def _s3dis_converter():
    spec = importlib.util.spec_from_file_location('s3dis_conv', ROOT / 'tools' / 'dataset_converters' / 's3dis.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_s3dis_annotations_to_converter_to_dataset(tmp_path):
    src = tmp_path / 'Stanford3dDataset_v1.2_Aligned_Version'
    rng = np.random.RandomState(3)
    for area, room in [(1, 'office_1'), (5, 'hallway_1')]:
        ann = src / f'Area_{area}' / room / 'Annotations'
        ann.mkdir(parents=True)
        for name in ['floor_1', 'chair_1', 'stairs_1']:
            xyz = rng.rand(300, 3) * [3, 2, 1]
            rgb = rng.randint(0, 256, (300, 3))
            np.savetxt(ann / f'{name}.txt', np.concatenate([xyz, rgb], 1), fmt='%.4f')
    out = tmp_path / 's3dis'
    conv = _s3dis_converter()
    paths = conv.convert(str(src), str(out), quiet=True)
    assert sorted(Path(p).name for p in paths) == ['Area_1_office_1.npy', 'Area_5_hallway_1.npy']
    room = np.load(out / 'Area_1_office_1.npy')
    assert room.shape == (900, 7)
    # chair, floor, stairs->clutter in file order (sorted names)
    assert sorted(set(room[:, 6].astype(int).tolist())) == [1, 8, 12]

    train = S3DISDataset(str(out), 'train', test_area=5, num_points=128, min_points=10,
                         pipeline=[dict(type='PackPointCloud', feature_keys=('feat',), label_key='seg')])
    d = train[0]
    assert d.x.shape == (128, 9) and d.y.shape == (128,)
    assert (d.x[:, 3:6] <= 1).all() and (d.x[:, 6:] <= 1 + 1e-6).all()
    assert (d.x[:, :2].abs() <= 0.5 + 1e-5).all()  # block-centred xy within the 1 m block

    test = S3DISDataset(str(out), 'test', test_area=5, num_points=128)
    room = test[0]
    assert room.room_size.item() == 900 and room.y.shape == (900,)
    assert set(room.point_idx.tolist()) == set(range(900))  # every room point is covered
    assert room.x.shape[0] % 128 == 0

    # rooms collate and evaluate end to end: model votes -> metric over all 900 room points
    from projects.pointcloud.metrics import SemSegMetric
    from projects.pointcloud.models import PCTSemSeg
    model = PCTSemSeg(num_classes=13, in_channels=9, embed_channels=(8, 8), num_layers=1,
                      fuse_channels=16, head_channels=(8,)).eval()
    preds = model(pointcloud_collate([test[0]])['inputs'], mode='predict')
    assert preds[0]['pred'].shape == (900,) and torch.equal(preds[0]['gt'], test[0].y)
    metric = SemSegMetric(num_classes=13)
    metric.process(None, preds)
    assert 0.0 <= metric.compute_metrics(metric.results)['OA'] <= 100.0

    with pytest.raises(FileNotFoundError, match='missing Annotations folder'):
        (src / 'Area_2' / 'bad_room').mkdir(parents=True)
        conv.convert(str(src), str(tmp_path / 'x'), quiet=True)


def test_synthetic_is_seeded_and_split():
    a = SyntheticPrimitives(12, 64, seed=3)
    b = SyntheticPrimitives(12, 64, seed=3)
    c = SyntheticPrimitives(12, 64, seed=3, split='test')
    np.testing.assert_array_equal(a.get_sample(5)['pos'], b.get_sample(5)['pos'])
    assert not np.allclose(a.get_sample(5)['pos'], c.get_sample(5)['pos'])
    assert [a.get_sample(i)['label'] for i in range(6)] == list(range(6))
    p = SyntheticPrimitives(8, 64, task='part')
    s = p.get_sample(2)  # lamp: parts 4, 5, 6
    assert s['category'] == 2 and set(s['seg'].tolist()) == {4, 5, 6}
    assert np.linalg.norm(s['pos'], axis=1).max() == pytest.approx(1.0, abs=1e-5)


def test_transforms():
    rng = np.random.RandomState(0)
    pos = rng.rand(50, 3).astype(np.float32) * 4 + 2
    out = NormalizeUnitSphere()(dict(pos=pos.copy()))
    assert np.abs(out['pos'].mean(0)).max() < 1e-5
    assert np.linalg.norm(out['pos'], axis=1).max() == pytest.approx(1.0, abs=1e-5)
    np.random.seed(0)
    r = RandomScaleShift()(dict(pos=np.ones((4, 3), np.float32)))
    s = r['pos'][0]
    assert np.allclose(r['pos'], s) and ((s >= 2 / 3 - 0.2) & (s <= 1.5 + 0.2)).all()
    rot = RandomRotateUp(axis=2)(dict(pos=pos.copy(), normal=pos.copy()))
    np.testing.assert_allclose(rot['pos'][:, 2], pos[:, 2], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rot['pos'][:, :2], axis=1),
                               np.linalg.norm(pos[:, :2], axis=1), rtol=1e-5)
    seg = np.arange(50)
    drop = RandomPointDropout(0.5)(dict(pos=pos.copy(), seg=seg.copy()))
    np.testing.assert_array_equal(drop['pos'], pos[drop['seg']])  # arrays move together
    fp = FixedPoints(80)(dict(pos=pos.copy(), seg=seg.copy()))
    assert fp['pos'].shape == (80, 3) and set(fp['seg'].tolist()) == set(range(50))
    assert FixedPoints(10, mode='first')(dict(pos=pos.copy()))['pos'].shape == (10, 3)
    with pytest.raises(ValueError, match=r'results\["pos"\] of shape \(N, 3\)'):
        FixedPoints(10)(dict(pos=np.zeros((5, 2))))
    with pytest.raises(KeyError, match="no \\['normal'\\]"):
        PackPointCloud(feature_keys=('pos', 'normal'))(dict(pos=pos, label=1))


def test_collate_builds_a_pyg_batch_and_registers_in_functions():
    from mmengine.registry import FUNCTIONS
    assert FUNCTIONS.get('pointcloud_collate') is pointcloud_collate
    ds = SyntheticPrimitives(3, 20, pipeline=[PACK])
    out = pointcloud_collate([ds[0], ds[1], ds[2]])
    assert out['inputs'].pos.shape == (60, 3) and out['inputs'].batch.max() == 2
    assert out['inputs'].y.tolist() == [0, 1, 2] and out['data_samples'] is None
    with pytest.raises(TypeError, match='end the pipeline with PackPointCloud'):
        pointcloud_collate([dict(pos=torch.zeros(3, 3))])


# --- bad data: one clear error naming the file (and line or key) when the sample loads -----------

def _modelnet_h5(root, files=((3, 0), (2, 1))):
    h5py = pytest.importorskip('h5py')
    root.mkdir(exist_ok=True)
    rng = np.random.RandomState(0)
    for i, (n, offset) in enumerate(files):
        with h5py.File(root / f'ply_data_train{i}.h5', 'w') as f:
            f['data'] = rng.rand(n, 64, 3).astype(np.float32)
            f['label'] = (np.arange(n, dtype=np.uint8) + offset).reshape(n, 1)
    (root / 'shape_names.txt').write_text('\n'.join(f'c{i}' for i in range(40)))
    return h5py


def test_modelnet40_hdf5_truncated_file_is_named_and_skip_bad_skips_it(tmp_path, mmengine_log):
    root = tmp_path / 'modelnet40_ply_hdf5_2048'
    _modelnet_h5(root)
    bad = root / 'ply_data_train1.h5'
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 3])
    with pytest.raises(BadSampleError, match=rf'ModelNet40Dataset: {bad}: not a readable HDF5 file \(truncated or '
                       r'corrupt: .*\)') as info:
        ModelNet40Dataset(str(root), 'train')
    assert info.value.__suppress_context__  # h5py's own traceback is not chained
    ds = ModelNet40Dataset(str(root), 'train', skip_bad=True)
    assert len(ds) == 3  # the 3 shapes of the good file
    assert [m for m in mmengine_log if 'skip_bad' in m] == [
        f'skip_bad: skipping {info.value} (1 bad so far)']


def test_modelnet40_hdf5_missing_key_and_bad_labels_are_named(tmp_path):
    h5py = _modelnet_h5(tmp_path / 'm')
    path = tmp_path / 'm' / 'ply_data_train0.h5'
    with h5py.File(path, 'a') as f:
        del f['label']
    with pytest.raises(BadSampleError, match=rf"{path} has no \['label'\] dataset \(keys: \['data'\]\)"):
        ModelNet40Dataset(str(tmp_path / 'm'), 'train')
    with h5py.File(path, 'a') as f:
        f['label'] = np.array([[1], [40], [45]], np.int64)
    with pytest.raises(BadSampleError, match=rf'{path} \[label\]: 2 label\(s\) outside 0..39: \[40, 45\]'):
        ModelNet40Dataset(str(tmp_path / 'm'), 'train')


def test_modelnet40_hdf5_nan_coordinates_are_named_when_the_shape_loads(tmp_path):
    h5py = _modelnet_h5(tmp_path / 'm')
    path = tmp_path / 'm' / 'ply_data_train1.h5'
    with h5py.File(path, 'a') as f:
        data = f['data'][:]
        data[1, 7, 2] = np.nan
        f['data'][...] = data
    ds = ModelNet40Dataset(str(tmp_path / 'm'), 'train', pipeline=[PACK])
    ds[3]  # shape 0 of the second file is fine
    with pytest.raises(BadSampleError, match=rf'{path} \[data\[1\]\]: 1 point\(s\) with NaN/Inf values, the first '
                       r'is point 7: \[.*nan\]'):
        ds[4]


def _normal_resampled(root):
    (root / 'airplane').mkdir(parents=True)
    (root / 'modelnet40_shape_names.txt').write_text('airplane\nbathtub\n')
    (root / 'modelnet40_train.txt').write_text('airplane_0001\nairplane_0002\n\nairplane_0003\n')
    for i in (1, 2, 3):
        np.savetxt(root / 'airplane' / f'airplane_000{i}.txt', np.random.RandomState(i).rand(10, 6),
                   delimiter=',', fmt='%.6f')
    return root


def test_txt_cloud_with_a_malformed_line_is_named_with_its_line(tmp_path):
    root = _normal_resampled(tmp_path / 'n')
    path = root / 'airplane' / 'airplane_0002.txt'
    lines = path.read_text().splitlines()
    lines[4] = '0.1,0.2,0.3,0.4,abc,0.6'
    path.write_text('\n'.join(lines) + '\n')
    ds = ModelNet40NormalDataset(str(root), 'train')
    ds[0]
    with pytest.raises(BadSampleError, match=rf"ModelNet40NormalDataset: {path}:5: expected 6 ','-separated numbers "
                       r"\(x,y,z,nx,ny,nz\), got '0.1,0.2,0.3,0.4,abc,0.6' \('abc' is not a number\)") as info:
        ds[1]
    assert info.value.__suppress_context__
    lines[4] = '0.1,0.2,0.3,0.4,0.5'  # a missing column
    path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(BadSampleError, match=rf'{path}:5: .*\(5 values\)'):
        ds[1]


def test_split_file_naming_a_missing_sample_is_named_with_its_line(tmp_path):
    root = _normal_resampled(tmp_path / 'n')
    (root / 'airplane' / 'airplane_0003.txt').unlink()
    ds = ModelNet40NormalDataset(str(root), 'train')
    with pytest.raises(BadSampleError, match=rf'{root / "modelnet40_train.txt"}:4: names shape file '
                       r'.*airplane_0003.txt, which does not exist'):
        ds[2]


def test_nan_and_empty_txt_clouds_are_named(tmp_path):
    root = _normal_resampled(tmp_path / 'n')
    path = root / 'airplane' / 'airplane_0001.txt'
    lines = path.read_text().splitlines()
    lines[2] = 'nan,0.2,0.3,0.4,0.5,0.6'
    path.write_text('\n'.join(lines[:1] + [''] + lines[1:]) + '\n')  # a blank line shifts the line numbers
    ds = ModelNet40NormalDataset(str(root), 'train')
    with pytest.raises(BadSampleError, match=rf'{path}:4: 1 point\(s\) with NaN/Inf values, the first: \[nan, '):
        ds[0]
    path.write_text('')
    with pytest.raises(BadSampleError, match=rf'{path}: empty cloud \(no points in the file\)'):
        ds[0]


def test_shapenet_part_bad_shapes_are_named_and_skip_bad_serves_the_next(tmp_path, mmengine_log):
    root = tmp_path / 'shapenetcore_partanno_segmentation_benchmark_v0_normal'
    (root / 'train_test_split').mkdir(parents=True)
    (root / '02691156').mkdir()
    (root / 'synsetoffset2category.txt').write_text('Airplane\t02691156\n')
    tokens = ['a', 'b', 'c', 'd']
    for t in tokens:
        arr = np.concatenate([np.random.RandomState(3).rand(8, 6), np.full((8, 1), 2.0)], 1)
        np.savetxt(root / '02691156' / f'{t}.txt', arr, fmt='%.6f')
    split = root / 'train_test_split' / 'shuffled_train_file_list.json'
    split.write_text(json.dumps([f'shape_data/02691156/{t}' for t in tokens + ['gone']]))
    (root / '02691156' / 'b.txt').write_text('0 0 0 0 0 1 3\n0 0 0 0 0 1 77\n')
    (root / '02691156' / 'c.txt').write_text('0 0 0 0 0 1 3\n0 0 inf 0 0 1 3\n')
    ds = ShapeNetPartDataset(str(root), 'train', pipeline=[dict(type='PackPointCloud', label_key='seg')])
    assert ds[0].y.tolist() == [2] * 8
    with pytest.raises(BadSampleError, match=rf'{root / "02691156" / "b.txt"}: 1 part id\(s\) outside 0..49: \[77\]'):
        ds[1]
    with pytest.raises(BadSampleError, match=rf'{root / "02691156" / "c.txt"}:2: 1 point\(s\) with NaN/Inf'):
        ds[2]
    with pytest.raises(BadSampleError, match=rf'{split}: entry 4 "shape_data/02691156/gone" names shape file '
                       r'.*gone.txt, which does not exist'):
        ds[4]
    skipping = ShapeNetPartDataset(str(root), 'train', skip_bad=True,
                                   pipeline=[dict(type='PackPointCloud', label_key='seg')])
    assert torch.equal(skipping[1].pos, skipping[3].pos)  # b and c are bad: d is served
    assert torch.equal(skipping[4].pos, skipping[0].pos)  # past the end: wraps around to a
    logged = [m for m in mmengine_log if 'skip_bad' in m]
    assert len(logged) == 3 and logged[-1].endswith('(3 bad so far)') and 'gone.txt' in logged[-1]


def _s3dis_rooms(root, rooms):
    root.mkdir()
    rng = np.random.RandomState(4)
    for name in rooms:
        room = np.concatenate([rng.rand(400, 3) * [3, 2, 1], rng.randint(0, 256, (400, 3)),
                               rng.randint(0, 13, (400, 1))], 1).astype(np.float32)
        np.save(root / f'{name}.npy', room)
    return root


def test_s3dis_bad_room_files_are_named(tmp_path, mmengine_log):
    root = _s3dis_rooms(tmp_path / 's3dis', ['Area_1_office_1', 'Area_2_office_2', 'Area_5_hall_1'])
    bad = root / 'Area_2_office_2.npy'
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(BadSampleError, match=rf'S3DISDataset: {bad}: not a readable .npy array \(truncated or corrupt'):
        S3DISDataset(str(root), 'train', num_points=64, min_points=4)
    ds = S3DISDataset(str(root), 'train', num_points=64, min_points=4, skip_bad=True)
    assert ds.room_names == ['Area_1_office_1'] and any(str(bad) in m for m in mmengine_log)

    room = np.load(root / 'Area_5_hall_1.npy')
    room[10, 1] = np.nan
    np.save(root / 'Area_5_hall_1.npy', room)
    test = S3DISDataset(str(root), 'test', num_points=64)
    with pytest.raises(BadSampleError, match=rf'{root / "Area_5_hall_1.npy"}: 1 point\(s\) with NaN/Inf values, '
                       r'the first is point 10'):
        test[0]
    room[10, 1], room[3, 6], room[5, 6] = 0.5, 13, 2.5
    np.save(root / 'Area_5_hall_1.npy', room)
    with pytest.raises(BadSampleError, match=r'Area_5_hall_1.npy \[column 7 \(label\)\]: labels must be integers, '
                       r'got e.g. \[2.5\]'):
        S3DISDataset(str(root), 'test', num_points=64)[0]
    room[5, 6] = 2
    np.save(root / 'Area_5_hall_1.npy', room)
    with pytest.raises(BadSampleError, match=r'\[column 7 \(label\)\]: 1 label\(s\) outside 0..12: \[13\]'):
        S3DISDataset(str(root), 'test', num_points=64)[0]
    np.save(root / 'Area_5_hall_1.npy', np.zeros((0, 7), np.float32))
    with pytest.raises(BadSampleError, match=r'Area_5_hall_1.npy: empty cloud \(0 points\)'):
        S3DISDataset(str(root), 'test', num_points=64)[0]
