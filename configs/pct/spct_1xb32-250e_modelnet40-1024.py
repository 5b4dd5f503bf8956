# SPCT (simple PCT: point embedding + offset-attention, 128 channels) on ModelNet40. Paper: OA 92.0.
_base_ = ['./pct_1xb32-250e_modelnet40-1024.py']
model = dict(_delete_=True, type='SimplePCT', num_classes=40, in_channels=3, label_smoothing=0.2)
