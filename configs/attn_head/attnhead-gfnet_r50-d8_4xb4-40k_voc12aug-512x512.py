# Ablation: AttnHead with GlobalFilter on dilated ResNet-50, PASCAL VOC 2012 aug, 40k iterations.
# The filter's reference size is the 64 x 64 head features of a 512 x 512 crop (64 x (64 // 2 + 1)
# frequencies); other sizes (whole-image inference) resize it.
_base_ = [
    '../_base_/models/attn_head_r50-d8.py', '../_base_/datasets/pascal_voc12_aug.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(attn=dict(type='GlobalFilter', h=64, w=33), num_classes=21),
    auxiliary_head=dict(num_classes=21))
