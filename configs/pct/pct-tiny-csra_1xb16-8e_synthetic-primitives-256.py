# CPU demo of CSRA pooling (Zhu & Wu, ICCV 2021) on point clouds: the PCT demo network with its max
# pooling + classifier MLP replaced by class-specific residual attention over the fused point features
# (ResidualAttention, padding masked; the official defaults: one head at T = 1, lambda = 0.1).
#   python tools/train.py configs/pct/pct-tiny-csra_1xb16-8e_synthetic-primitives-256.py
_base_ = ['./pct-tiny_1xb16-8e_synthetic-primitives-256.py']
model = dict(pool=dict(type='ResidualAttention'))
