# PCT semantic segmentation on S3DIS, train on areas 1-4/6, test on whole rooms of Area 5
# (1 m blocks, 4096 points, 9 channels, votes over overlapping blocks). Paper: mIoU 61.33.
_base_ = ['./_base_/default_runtime.py', './_base_/s3dis.py']
model = dict(type='PCTSemSeg', num_classes=13, in_channels=9, attn=dict(type='OffsetAttention'))
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=100, eta_min=1e-4, by_epoch=True)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=10, save_best='mIoU', rule='greater'))
