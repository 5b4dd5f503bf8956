# PCT on ModelNet40 with CSRA (Zhu & Wu, ICCV 2021) in place of the max pooling + classifier MLP:
# class logits by class-specific residual attention over the 1024-channel fused point features
# (ResidualAttention with the official defaults: one head at T = 1, lambda = 0.1). Everything else as
# the PCT recipe. Not run here (needs the dataset and a GPU).
_base_ = ['./pct_1xb32-250e_modelnet40-1024.py']
model = dict(pool=dict(type='ResidualAttention'))
