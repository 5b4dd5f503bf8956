# CPU demo: a slim PCT (neighbour embedding 128/64 centres, 4 offset-attention layers of 64
# channels) classifying seeded procedural primitives (sphere, cube, cylinder, cone, torus, pyramid),
# generated in memory: no files needed.
#   python tools/train.py configs/pct/pct-tiny_1xb16-8e_synthetic-primitives-256.py
#   python tools/test.py configs/pct/pct-tiny_1xb16-8e_synthetic-primitives-256.py \
#       work_dirs/pct-tiny_1xb16-8e_synthetic-primitives-256/epoch_8.pth
_base_ = ['./_base_/default_runtime.py']
num_points = 256
model = dict(
    type='PCTClassifier', num_classes=6, in_channels=3,
    embed_channels=(32, 32), neighbor_stages=((128, 16, 64), (64, 16, 64)),
    encoder_mlp=(64, 64), num_layers=4, attn=dict(type='OffsetAttention'),
    fuse_channels=256, head_channels=(128, 64), dropout=0.3, label_smoothing=0.1)
train_pipeline = [
    dict(type='RandomScaleShift', scale=(0.85, 1.15), shift=0.1),
    dict(type='RandomRotateUp', axis=2),
    dict(type='ShufflePoints'),
    dict(type='PackPointCloud', label_key='label'),
]
test_pipeline = [dict(type='PackPointCloud', label_key='label')]
# test-time votes (tools/test.py --tta [--votes V]): the test view plus 9 anisotropic rescales
# U(0.8, 1.25) per axis, class probabilities averaged (the RS-CNN / DGCNN-family voting)
tta_pipeline = test_pipeline[:-1] + [
    dict(type='TestTimeVotes', num_votes=10,
         augment=[dict(type='RandomScaleShift', scale=(0.8, 1.25), shift=0.0)],
         pack=test_pipeline[-1])]
dataset = dict(type='SyntheticPrimitives', num_points=num_points, task='cls', seed=0)
train_dataloader = dict(
    batch_size=16, num_workers=0, drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(dataset, num_samples=480, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=0, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pointcloud_collate'),
    dataset=dict(dataset, num_samples=180, split='test', pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='ClassificationAccuracy', num_classes=6)
test_evaluator = val_evaluator
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=3e-3, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=8, eta_min=1e-5, by_epoch=True)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=8, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=4, save_best='OA', rule='greater'))
