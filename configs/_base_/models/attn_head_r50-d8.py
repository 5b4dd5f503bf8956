# Dilated ResNet-50 (output stride 8) + AttnHead (mmseg's NLHead recipe with any ATTENTION op in the
# non-local block's place, set by decode_head.attn; the op's kind decides the identity) + FCN aux.
_base_ = './eanet_r50-d8.py'
model = dict(
    decode_head=dict(
        _delete_=True,
        type='AttnHead',
        in_channels=2048,
        in_index=3,
        channels=512,
        attn=dict(type='ExternalAttention'),
        concat_input=True,
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
