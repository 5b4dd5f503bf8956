# ShapeNetPart (data/shapenetcore_partanno_segmentation_benchmark_v0_normal), 2048 points,
# xyz input, trainval for training and test for evaluation (PCT protocol).
dataset_type = 'ShapeNetPartDataset'
data_root = 'data/shapenetcore_partanno_segmentation_benchmark_v0_normal'
num_points = 2048
train_pipeline = [
    dict(type='NormalizeUnitSphere'),
    dict(type='FixedPoints', num_points=num_points, mode='random'),
    dict(type='RandomScaleShift', scale=(0.8, 1.25), shift=0.1),
    dict(type='PackPointCloud', label_key='seg'),
]
test_pipeline = [
    dict(type='NormalizeUnitSphere'),
    dict(type='PackPointCloud', label_key='seg'),  # all points of every shape
]
# test-time votes (tools/test.py --tta [--votes V]): the test view plus 9 anisotropic rescales
# U(0.8, 1.25) per axis, class probabilities averaged (the RS-CNN / DGCNN-family voting)
tta_pipeline = test_pipeline[:-1] + [
    dict(type='TestTimeVotes', num_votes=10,
         augment=[dict(type='RandomScaleShift', scale=(0.8, 1.25), shift=0.0)],
         pack=test_pipeline[-1])]
train_dataloader = dict(
    batch_size=16, num_workers=4, persistent_workers=True, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='trainval', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=4, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='PartSegMIoU', category_parts='ShapeNetPart')
test_evaluator = val_evaluator
