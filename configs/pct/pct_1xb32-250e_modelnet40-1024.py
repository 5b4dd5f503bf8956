# PCT (Guo et al. 2021) on ModelNet40, the PCT_Pytorch recipe: 1024 points, batch 32, SGD 0.01
# cosine to 1e-4 over 250 epochs, label smoothing 0.2. Paper: OA 93.2.
_base_ = ['./_base_/default_runtime.py', './_base_/modelnet40.py',
          './_base_/schedule_sgd_cosine_250e.py']
model = dict(type='PCT', num_classes=40, in_channels=3, attn=dict(type='OffsetAttention'),
             dropout=0.5, label_smoothing=0.2)
default_hooks = dict(checkpoint=dict(save_best='OA', rule='greater'))
