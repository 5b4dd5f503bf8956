# Ablation: AttnHead with AFTLocal on dilated ResNet-50, PASCAL VOC 2012 aug, 40k iterations.
# Its position biases cover max_len tokens: 4096 = the 64 x 64 head features of a 512 x 512 crop, so
# inference slides 512 x 512 windows (whole test images, short side resized to 512, have more).
_base_ = [
    '../_base_/models/attn_head_r50-d8.py', '../_base_/datasets/pascal_voc12_aug.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(attn=dict(type='AFTLocal', max_len=4096), num_classes=21),
    auxiliary_head=dict(num_classes=21),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
