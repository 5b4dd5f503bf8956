# Ablation: AttnHead with DeformableAttention on dilated ResNet-50, PASCAL VOC 2012 aug, 40k iterations.
_base_ = [
    '../_base_/models/attn_head_r50-d8.py', '../_base_/datasets/pascal_voc12_aug.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # stride 2: 32 x 32 = 1024 sampled keys on the 64 x 64 features, as many as DAT's stage 3 samples on a
    # 512 x 512 input (stride 1 keeps a (B, heads, 4096, 4096) bias, 4.3 GB at batch 4)
    decode_head=dict(attn=dict(type='DeformableAttention', stride=2), num_classes=21),
    auxiliary_head=dict(num_classes=21))
