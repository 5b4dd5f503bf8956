# PCT_Pytorch recipe: SGD lr 0.01 (= 100 x 1e-4), momentum 0.9, weight decay 5e-4, cosine
# annealing to 1e-4 over 250 epochs, stepped per epoch.
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=250, eta_min=1e-4, by_epoch=True, begin=0, end=250)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=250, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
