# ModelNet40, PointNet's HDF5 layout (data/modelnet40_ply_hdf5_2048), 1024 points (PCT_Pytorch:
# the first 1024 of 2048), training augmentation = anisotropic scale U(2/3, 3/2) + shift 0.2
# + shuffle, as in PCT_Pytorch's ModelNet40 loader.
dataset_type = 'ModelNet40Dataset'
data_root = 'data/modelnet40_ply_hdf5_2048'
num_points = 1024
train_pipeline = [
    dict(type='FixedPoints', num_points=num_points, mode='first'),
    dict(type='RandomScaleShift', scale=(2. / 3., 3. / 2.), shift=0.2),
    dict(type='ShufflePoints'),
    dict(type='PackPointCloud', label_key='label'),
]
test_pipeline = [
    dict(type='FixedPoints', num_points=num_points, mode='first'),
    dict(type='PackPointCloud', label_key='label'),
]
# test-time votes (tools/test.py --tta [--votes V]): the test view plus 9 anisotropic rescales
# U(0.8, 1.25) per axis, class probabilities averaged (the RS-CNN / DGCNN-family voting)
tta_pipeline = test_pipeline[:-1] + [
    dict(type='TestTimeVotes', num_votes=10,
         augment=[dict(type='RandomScaleShift', scale=(0.8, 1.25), shift=0.0)],
         pack=test_pipeline[-1])]
train_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=4, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='ClassificationAccuracy', num_classes=40)
test_evaluator = val_evaluator
