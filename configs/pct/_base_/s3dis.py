# S3DIS, rooms converted by tools/dataset_converters/s3dis.py into data/s3dis; train on areas
# 1-4 and 6 (1 m blocks, 4096 points, 9 channels), evaluate on whole rooms of Area 5 with votes.
# No tta_pipeline: the whole-room test already votes over overlapping blocks (stride 0.5 m).
dataset_type = 'S3DISDataset'
data_root = 'data/s3dis'
train_pipeline = [dict(type='PackPointCloud', feature_keys=('feat',), label_key='seg')]
train_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', test_area=5,
                 num_points=4096, block_size=1.0, sample_rate=1.0, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', test_area=5,
                 num_points=4096, block_size=1.0, stride=0.5, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='SemSegMetric', num_classes=13,
                     class_names=['ceiling', 'floor', 'wall', 'beam', 'column', 'window', 'door',
                                  'table', 'chair', 'sofa', 'bookcase', 'board', 'clutter'])
test_evaluator = val_evaluator
