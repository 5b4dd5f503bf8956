"""EAHead and AttnHead inside a tiny EncoderDecoder: forward, loss, backward, predict."""
import pytest
import torch
import torch.nn.functional as F

import projects.segmentation  # noqa: F401  (shim + registration)
from attn_ops import ATTENTION
from attn_ops.layouts import LayoutAdapter
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from projects.segmentation import AttnHead, EAHead
from tests.ops.common import assert_learns

NUM_CLASSES = 3


@pytest.fixture(autouse=True)
def _mmseg_scope():
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


FEATURE_OPS = [n for n in sorted(ATTENTION.module_dict) if ATTENTION.get(n).kind != 'pool']
BN = dict(type='BN')


@pytest.mark.parametrize('head', [
    dict(type='EAHead', ea_channels=16),
    dict(type='EAHead', ea_channels=24, attn=dict(type='ExternalAttentionBlock', k=8)),
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
    head = EAHead(in_channels=64, ea_channels=32, channels=16, num_classes=NUM_CLASSES,
                  norm_cfg=dict(type='BN'), attn=dict(type='ExternalAttentionBlock', k=16))
    assert head.pre_conv.conv.in_channels == 64 and head.pre_conv.conv.out_channels == 32
    assert head.pre_conv.conv.kernel_size == (3, 3)
    block = head.attn.op
    assert type(block).__name__ == 'ExternalAttentionBlock' and block.k == 16 and block.dim == 32
    assert head.attn.gamma is None                          # a block: no identity added around it
    assert isinstance(block.norm, torch.nn.BatchNorm2d)     # the head's norm_cfg reached the block
    assert head.post_conv.conv.out_channels == 16           # ea_channels -> channels (official fc1)
    assert head.channels == 16 and head.conv_seg.in_channels == 16       # the classifier's width
    assert isinstance(head.dropout, torch.nn.Dropout2d) and head.dropout.p == 0.1


def test_ea_head_attention_equals_catalogue_formula():
    """The block inside EAHead == conv1 -> fightingcv ExternalAttention -> conv2 -> norm, +x, ReLU."""
    from fightingcv_attention.attention.ExternalAttention import ExternalAttention as CatalogueEA

    torch.manual_seed(1)
    head = EAHead(in_channels=8, ea_channels=16, channels=8, num_classes=NUM_CLASSES,
                  norm_cfg=dict(type='BN'), attn=dict(type='ExternalAttentionBlock', k=8)).eval()
    block = head.attn.op
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


@pytest.mark.parametrize('name', FEATURE_OPS)
def test_attn_head_adds_the_identity_once_or_never(name):
    """convs[1] sees z + gamma * op(z) for an attention op, op(z) alone for a block or a gate."""
    torch.manual_seed(2)
    head = AttnHead(attn=dict(type=name), in_channels=16, channels=16, num_classes=NUM_CLASSES,
                    norm_cfg=BN).eval()
    op_cls = ATTENTION.get(name)
    op = head.attn.op
    assert isinstance(op.op if op_cls.layout == 'tokens' else op, op_cls)
    assert isinstance(op, LayoutAdapter) == (op_cls.layout == 'tokens')
    assert (head.attn.gamma is not None) == (op_cls.kind == 'attention')
    if head.attn.gamma is not None:
        assert float(head.attn.gamma.scale) == 0.0          # starts closed: the FCN head
        head.attn.gamma.scale.data.fill_(0.5)
    seen = {}
    head.convs[0].register_forward_hook(lambda m, i, o: seen.update(z=o))
    op.register_forward_hook(lambda m, i, o: seen.update(a=o))
    head.convs[1].register_forward_hook(lambda m, i, o: seen.update(y=i[0]))
    with torch.no_grad():
        assert head([torch.randn(2, 16, 6, 5)]).shape == (2, NUM_CLASSES, 6, 5)
    expected = seen['z'] + 0.5 * seen['a'] if op_cls.kind == 'attention' else seen['a']
    torch.testing.assert_close(seen['y'], expected)


def test_ops_with_a_norm_take_the_heads_norm_cfg():
    """Token ops too (their norm runs over the tokens' channels): SyncBN in the recipes."""
    sync = dict(type='SyncBN', requires_grad=True)
    head = AttnHead(attn=dict(type='OffsetAttention'), in_channels=16, channels=16, num_classes=2, norm_cfg=sync)
    assert type(head.attn.op.op.norm).__name__ == 'SyncBatchNorm'
    head = EAHead(in_channels=16, ea_channels=16, channels=8, num_classes=2, norm_cfg=sync)
    assert type(head.attn.op.norm).__name__ == 'SyncBatchNorm'
    own = AttnHead(attn=dict(type='OffsetAttention', norm_cfg=dict(type='LN')), in_channels=16, channels=16,
                   num_classes=2, norm_cfg=sync)
    assert type(own.attn.op.op.norm).__name__ == 'LayerNorm'      # an op's own norm_cfg wins


def test_untrained_attn_head_equals_the_fcn_head_it_extends():
    torch.manual_seed(3)
    kw = dict(in_channels=16, channels=16, num_classes=NUM_CLASSES, norm_cfg=BN)
    head = AttnHead(attn=dict(type='MultiHeadAttention', num_heads=2), **kw).eval()
    fcn = MODELS.build(dict(type='FCNHead', num_convs=2, **kw)).eval()
    missing, unexpected = fcn.load_state_dict(head.state_dict(), strict=False)
    assert not missing and all(k.startswith('attn.') for k in unexpected)
    x = torch.randn(2, 16, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(head([x]), fcn([x]))


@pytest.fixture(scope='module')
def demo_features():
    """The demo config's backbone (ResNet-18-D8) features of one 64 x 64 batch, labels by quadrant,
    and its decode head's config: each op's head trains on them (the backbone is shared and fixed,
    so the run costs the head alone)."""
    cfg = Config.fromfile('configs/eanet/eanet_r18-d8_1xb8-1k_demo-shapes-64x64.py')
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model).eval()
        inputs, samples = batch(2, 64)
        quadrant = (torch.arange(64)[:, None] >= 32) * 2 + (torch.arange(64)[None] >= 32)
        for s in samples:     # a learnable target: the class is the image quadrant
            s.gt_sem_seg.data = (quadrant % NUM_CLASSES)[None]
        with torch.no_grad():
            feats = model.extract_feat(model.data_preprocessor(dict(inputs=inputs, data_samples=samples))['inputs'])
    head = dict(cfg.model.decode_head)
    for key in ('type', 'attn', 'ea_channels'):
        head.pop(key)
    return feats, samples, dict(head, num_classes=NUM_CLASSES, channels=32)


@pytest.mark.parametrize('name', FEATURE_OPS)
def test_every_op_trains_in_attn_head_on_the_demo_model(name, demo_features):
    """A few Adam steps of AttnHead around the op on the demo model's features: the loss is
    finite and falls, and the op's weights move."""
    feats, samples, head_cfg = demo_features
    torch.manual_seed(0)
    head = MODELS.build(dict(head_cfg, type='AttnHead', attn=dict(type=name))).train()
    assert_learns(lambda: head.loss(feats, samples, ConfigDict())['loss_ce'], head, head.attn.op, name=name)


def test_head_errors_name_the_problem():
    kw = dict(in_channels=8, channels=8, num_classes=2)
    with pytest.raises(TypeError, match='attn must be a config dict'):
        AttnHead(attn='ExternalAttention', **kw)
    with pytest.raises(KeyError, match='Did you mean: ExternalAttention'):
        AttnHead(attn=dict(type='ExternalAtention'), **kw)
    with pytest.raises(ValueError, match="AttnHead: OffsetAttention is a 'block' op: its output already includes "
                                         'its input, so residual=True would add the identity twice'):
        AttnHead(attn=dict(type='OffsetAttention'), residual=True, **kw)
    with pytest.raises(ValueError, match="EAHead: CrissCrossAttention is a 'block' op"):
        EAHead(attn=dict(type='CrissCrossAttention'), residual=True, ea_channels=8, **kw)
    head = AttnHead(attn=dict(type='ExternalAttention'), residual=False, **kw)
    assert head.attn.gamma is None                           # allowed: the op's output alone
    with pytest.raises(ValueError, match='num_convs is fixed at 2'):
        AttnHead(attn=dict(type='ExternalAttention'), num_convs=1, **kw)


def test_cchead_of_mmseg_in_encoder_decoder():
    model = tiny_model(dict(type='CCHead', recurrence=2))
    inputs, samples = batch()
    model.loss(inputs, samples)['decode.loss_ce'].backward()
    assert model.decode_head.cca.gamma.scale.grad.abs() > 0
