"""EAHead and AttnHead inside a tiny EncoderDecoder: forward, loss, backward, predict."""
import pytest
import torch
import torch.nn.functional as F

import projects.segmentation  # noqa: F401  (shim + registration)
from attn_ops import ATTENTION
from attn_ops.layouts import LayoutAdapter
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from projects.segmentation import AttnHead, EAHead

NUM_CLASSES = 3


@pytest.fixture(autouse=True)
def _mmseg_scope():
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


def tiny_model(decode_head: dict) -> torch.nn.Module:
    norm = dict(type='BN', requires_grad=True)
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.0] * 3, std=[1.0] * 3,
                               size=(32, 32)),
        backbone=dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=8,
                      num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4),
                      strides=(1, 2, 1, 1), norm_cfg=norm, contract_dilation=True),
        decode_head=dict(in_channels=64, in_index=3, channels=16, num_classes=NUM_CLASSES,
                         norm_cfg=norm, dropout_ratio=0.1, align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0), **decode_head),
        test_cfg=ConfigDict(mode='whole'))
    return MODELS.build(cfg)


def batch(n=2, size=32):
    torch.manual_seed(0)
    inputs = torch.rand(n, 3, size, size) * 255
    samples = []
    for _ in range(n):
        s = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        pad_shape=(size, size)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, NUM_CLASSES, (1, size, size)))
        samples.append(s)
    return inputs, samples


@pytest.mark.parametrize('head', [
    dict(type='EAHead'),
    dict(type='EAHead', attn=dict(type='ExternalAttentionBlock', k=8), halve_last=False),
    dict(type='AttnHead', attn=dict(type='ExternalAttention', S=8)),
])
def test_head_in_encoder_decoder(head):
    model = tiny_model(head)
    inputs, samples = batch()
    losses = model.loss(inputs, samples)
    loss = losses['decode.loss_ce']
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    attn = model.decode_head.attn
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in attn.parameters())
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model.predict(inputs, samples)
        logits = model(inputs, mode='tensor')
    assert logits.shape == (2, NUM_CLASSES, 4, 4)  # head resolution: 1/8 of the input
    assert preds[0].pred_sem_seg.data.shape == (1, 32, 32)
    assert preds[0].seg_logits.data.shape == (NUM_CLASSES, 32, 32)


def test_ea_head_follows_official_layout():
    head = EAHead(in_channels=64, channels=32, num_classes=NUM_CLASSES,
                  norm_cfg=dict(type='BN'), attn=dict(type='ExternalAttentionBlock', k=16))
    assert head.pre_conv.conv.in_channels == 64 and head.pre_conv.conv.out_channels == 32
    assert head.pre_conv.conv.kernel_size == (3, 3)
    assert type(head.attn).__name__ == 'ExternalAttentionBlock' and head.attn.k == 16
    assert isinstance(head.attn.norm, torch.nn.BatchNorm2d)  # the head's norm_cfg reached the block
    assert head.post_conv.conv.out_channels == 16  # channels -> channels // 2 (official fc1)
    assert head.conv_seg.in_channels == 16 and head.conv_seg.out_channels == NUM_CLASSES
    assert isinstance(head.dropout, torch.nn.Dropout2d) and head.dropout.p == 0.1


def test_ea_head_attention_equals_catalogue_formula():
    """The block inside EAHead == conv1 -> fightingcv ExternalAttention -> conv2 -> norm, +x, ReLU."""
    from fightingcv_attention.attention.ExternalAttention import ExternalAttention as CatalogueEA

    torch.manual_seed(1)
    head = EAHead(in_channels=8, channels=16, num_classes=NUM_CLASSES, norm_cfg=dict(type='BN'),
                  attn=dict(type='ExternalAttentionBlock', k=8)).eval()
    block = head.attn
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
        block.norm.running_mean.normal_(0, 0.1)
        block.norm.running_var.uniform_(0.5, 1.5)
    seen = {}
    block.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        out = head([x])
    assert out.shape == (2, NUM_CLASSES, 5, 6)
    feat = seen['x']
    cat = CatalogueEA(d_model=16, S=8)
    with torch.no_grad():
        cat.mk.weight.copy_(block.linear_0.weight.squeeze(-1))
        cat.mv.weight.copy_(block.linear_1.weight.squeeze(-1))
        f = block.conv1(feat).flatten(2).transpose(1, 2)                     # (B, N, C)
        # the catalogue normalises over dim=1 = tokens, then L1 over S: the paper's order
        ea = cat(f).transpose(1, 2).reshape(feat.shape)
        ref = F.relu(feat + block.norm(block.conv2(ea)))
    torch.testing.assert_close(seen['y'], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', sorted(ATTENTION.module_dict))
def test_attn_head_takes_every_registered_op(name):
    torch.manual_seed(2)
    head = AttnHead(attn=dict(type=name), in_channels=16, channels=16, num_classes=NUM_CLASSES,
                    norm_cfg=dict(type='BN'))
    op_cls = ATTENTION.get(name)
    if op_cls.layout == 'tokens':
        assert isinstance(head.attn, LayoutAdapter) and isinstance(head.attn.op, op_cls)
    else:
        assert isinstance(head.attn, op_cls)
    x = torch.randn(2, 16, 6, 5)
    out = head([x])
    assert out.shape == (2, NUM_CLASSES, 6, 5)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in head.attn.parameters()]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_attn_head_errors():
    with pytest.raises(TypeError, match='attn must be a config dict'):
        AttnHead(attn='ExternalAttention', in_channels=8, channels=8, num_classes=2)
    with pytest.raises(KeyError, match='Did you mean: ExternalAttention'):
        AttnHead(attn=dict(type='ExternalAtention'), in_channels=8, channels=8, num_classes=2)


def test_cchead_of_mmseg_in_encoder_decoder():
    model = tiny_model(dict(type='CCHead', recurrence=2))
    inputs, samples = batch()
    model.loss(inputs, samples)['decode.loss_ce'].backward()
    assert model.decode_head.cca.gamma.scale.grad.abs() > 0
