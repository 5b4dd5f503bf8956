# Ablation: AttnHead with the Point Transformer layer on dilated ResNet-50, PASCAL VOC 2012 aug,
# 40k iterations. The layout adapter hands the layer each pixel's (row, col) as its position.
# k = 9: on the pixel grid the 9 nearest pixels are exactly the 3 x 3 window (the paper's k = 16
# would break ties among the 8 pixels at distance sqrt(5) arbitrarily). Cost per 64 x 64 feature
# map: a kNN search over 4096^2 pixel pairs (chunked) and 4096 x 9 edges of 512 channels.
_base_ = [
    '../_base_/models/attn_head_r50-d8.py', '../_base_/datasets/pascal_voc12_aug.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(attn=dict(type='PointTransformerAttention', k=9), num_classes=21),
    auxiliary_head=dict(num_classes=21))
