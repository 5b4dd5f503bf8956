# PCT part segmentation on ShapeNetPart (16 categories, 50 parts), 2048 points, xyz input.
# Paper: instance mIoU 86.4.
_base_ = ['./_base_/default_runtime.py', './_base_/shapenetpart.py']
model = dict(type='PCTPartSeg', num_classes=50, in_channels=3, num_categories=16,
             category_parts='ShapeNetPart', attn=dict(type='OffsetAttention'))
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=200, eta_min=1e-4, by_epoch=True)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=200, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=10, save_best='ins_mIoU', rule='greater'))
