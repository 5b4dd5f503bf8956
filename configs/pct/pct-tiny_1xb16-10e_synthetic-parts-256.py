# CPU demo of part segmentation: a slim PCTPartSeg on seeded composite shapes (mushroom, table,
# lamp, snowman; 9 parts in all), generated in memory. Reports instance and class mIoU.
_base_ = ['./_base_/default_runtime.py']
num_points = 256
model = dict(
    type='PCTPartSeg', num_classes=9, in_channels=3, num_categories=4,
    category_parts='SyntheticPrimitives', embed_channels=(32, 32), num_layers=4,
    attn=dict(type='OffsetAttention'), fuse_channels=128, category_channels=16,
    head_channels=(64, 32), dropout=0.3)
train_pipeline = [
    dict(type='RandomScaleShift', scale=(0.8, 1.25), shift=0.1),
    dict(type='PackPointCloud', label_key='seg'),
]
test_pipeline = [dict(type='PackPointCloud', label_key='seg')]
# test-time votes (tools/test.py --tta [--votes V]): the test view plus 9 anisotropic rescales
# U(0.8, 1.25) per axis, class probabilities averaged (the RS-CNN / DGCNN-family voting)
tta_pipeline = test_pipeline[:-1] + [
    dict(type='TestTimeVotes', num_votes=10,
         augment=[dict(type='RandomScaleShift', scale=(0.8, 1.25), shift=0.0)],
         pack=test_pipeline[-1])]
dataset = dict(type='SyntheticPrimitives', num_points=num_points, task='part', seed=0)
train_dataloader = dict(
    batch_size=16, num_workers=0, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(dataset, num_samples=320, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=0, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(dataset, num_samples=80, split='test', pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='PartSegMIoU', category_parts='SyntheticPrimitives',
                     category_names=['mushroom', 'table', 'lamp', 'snowman'])
test_evaluator = val_evaluator
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-3, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=10, eta_min=1e-5, by_epoch=True)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=10, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=5, save_best='ins_mIoU', rule='greater'))
