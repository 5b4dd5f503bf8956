# NPCT (naive PCT: point embedding + naive self-attention, 128 channels) on ModelNet40. Paper: OA 91.0.
_base_ = ['./pct_1xb32-250e_modelnet40-1024.py']
model = dict(_delete_=True, type='NaivePCT', num_classes=40, in_channels=3, label_smoothing=0.2)
