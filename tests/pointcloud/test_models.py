"""Forward/backward of every network on tiny inputs, ragged batches == clouds one by one,
attention swaps, mmengine modes, clear errors."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from attn_ops import ATTENTION
from tests.ops.common import assert_learns
from projects.pointcloud.models import (PCTClassifier, PCTPartSeg, PCTSemSeg, NaivePCT,
                                        SimplePCT, smooth_cross_entropy)

TINY_CLS = dict(embed_channels=(16, 16), neighbor_stages=((16, 4, 32), (8, 4, 32)),
                encoder_mlp=(32, 32), num_layers=2, fuse_channels=64, head_channels=(32, 16))
TINY_SEG = dict(embed_channels=(16, 16), num_layers=2, fuse_channels=32, head_channels=(32, 16),
                category_channels=8)


def _batch(sizes, c=None, seg=False, classes=4, cats=None):
    torch.manual_seed(0)
    data = []
    for i, n in enumerate(sizes):
        d = Data(pos=torch.randn(n, 3))
        if c:
            d.x = torch.randn(n, c)
        d.y = torch.randint(classes, (n,) if seg else (1,))
        if cats is not None:
            d.category = torch.tensor([cats[i]])
        data.append(d)
    return Batch.from_data_list(data)


def _grads_ok(model):
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize('cls,kwargs', [
    (PCTClassifier, TINY_CLS),
    (PCTClassifier, dict(TINY_CLS, attn=dict(type='ExternalAttention', S=8))),
    (PCTClassifier, dict(TINY_CLS, attn=dict(type='MultiHeadAttention', num_heads=2))),
    (SimplePCT, dict(embed_channels=(16, 16), num_layers=2, fuse_channels=32, head_channels=(16,))),
    (NaivePCT, dict(embed_channels=(16, 16), num_layers=2, fuse_channels=32, head_channels=(16,))),
])
def test_classifiers_forward_backward(cls, kwargs):
    model = cls(num_classes=4, **kwargs)
    batch = _batch([40, 40, 40])
    out = model(batch, mode='loss')
    assert out['loss'].ndim == 0 and torch.isfinite(out['loss'])
    out['loss'].backward()
    _grads_ok(model)
    model.eval()
    preds = model(batch, mode='predict')
    assert len(preds) == 3 and preds[0]['logits'].shape == (4,)
    assert int(preds[1]['gt_label']) == int(batch.y[1])


def test_ragged_batch_equals_clouds_one_by_one():
    model = PCTClassifier(num_classes=4, **TINY_CLS).eval()
    batch = _batch([40, 25, 33])
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model(Batch.from_data_list([d])) for d in batch.to_data_list()])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_tiny_clouds_in_training_mode():
    """Clouds smaller than the FPS centres and than k still give finite logits and gradients."""
    model = PCTClassifier(num_classes=4, **TINY_CLS)
    batch = _batch([40, 6, 3])  # fewer points than FPS centres and than k
    out = model(batch)
    assert torch.isfinite(out).all()
    out.sum().backward()
    _grads_ok(model)


def test_part_and_semantic_segmentation():
    part = PCTPartSeg(num_classes=6, num_categories=2, category_parts=[[0, 1, 2], [3, 4, 5]], **TINY_SEG)
    batch = _batch([30, 20], seg=True, classes=6, cats=[0, 1])
    loss = part(batch, mode='loss')['loss']
    loss.backward()
    _grads_ok(part)
    part.eval()
    preds = part(batch, mode='predict')
    assert [p['pred'].shape[0] for p in preds] == [30, 20]
    assert set(preds[0]['pred'].tolist()) <= {0, 1, 2} and set(preds[1]['pred'].tolist()) <= {3, 4, 5}
    with pytest.raises(ValueError, match='needs batch.category'):
        part(_batch([10], seg=True, classes=6))

    sem = PCTSemSeg(num_classes=5, in_channels=9, **TINY_SEG)
    b = _batch([30, 20], c=9, seg=True, classes=5)
    logits = sem(b)
    assert logits.shape == (50, 5)
    sem(b, mode='loss')['loss'].backward()
    _grads_ok(sem)
    with pytest.raises(ValueError, match='in_channels=9 but the batch carries features of shape'):
        sem(_batch([10], seg=True))


def test_room_votes_cover_every_point():
    sem = PCTSemSeg(num_classes=3, in_channels=9, **TINY_SEG).eval()
    n_room = 50
    # two overlapping blocks of 32 points covering the 50 room points
    idx = torch.cat([torch.arange(32), torch.arange(18, 50)])
    feat = torch.randn(64, 9)
    room = Data(pos=feat[:, :3], x=feat, block=torch.repeat_interleave(torch.arange(2), 32),
                point_idx=idx, room_size=torch.tensor([n_room]), y=torch.randint(3, (n_room,)))
    batch = Batch.from_data_list([room, room])
    out = sem(batch, mode='predict')
    assert len(out) == 2 and out[0]['pred'].shape == (n_room,) and out[0]['gt'].shape == (n_room,)
    assert torch.equal(out[0]['pred'], out[1]['pred'])
    # points seen by one block only take that block's argmax
    single = sem(Batch.from_data_list([Data(pos=feat[:32, :3], x=feat[:32])]))
    assert torch.equal(out[0]['pred'][:18], single.argmax(-1)[:18])


def test_smooth_cross_entropy_matches_pct_formula():
    logits = torch.randn(5, 4)
    target = torch.tensor([0, 1, 2, 3, 0])
    eps = 0.2
    q = torch.full((5, 4), eps / 3)
    q[torch.arange(5), target] = 1 - eps
    want = -(q * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(smooth_cross_entropy(logits, target, eps), want)
    torch.testing.assert_close(smooth_cross_entropy(logits, target, 0.0),
                               torch.nn.functional.cross_entropy(logits, target))


def test_map_ops_run_on_equal_clouds_and_contradictions_are_refused():
    """A map op runs on the points as an N x 1 map (equal-size clouds: a map has no padding);
    an explicit residual around a block op would add the identity twice and is refused."""
    model = PCTClassifier(num_classes=4, **dict(TINY_CLS, attn=dict(type='ExternalAttentionBlock', k=8)))
    assert model.encoder.layers[0].mode == 'none'                     # a block is the whole layer
    assert model(_batch([20, 20])).shape == (2, 4)
    with pytest.raises(ValueError, match='ExternalAttentionBlock does not support padding masks'):
        model(_batch([20, 5]))   # fewer points than the 8 centres: padded tokens reach attention
    with pytest.raises(ValueError, match="AttentionBlock: OffsetAttention is a 'block' op: its output already "
                                         'includes its input'):
        PCTClassifier(num_classes=4, **dict(TINY_CLS, attn_mode='residual'))
    assert PCTClassifier(num_classes=4, **dict(TINY_CLS, attn=dict(type='SelfAttention'))).encoder.layers[0].mode \
        == 'offset'
    model = PCTClassifier(num_classes=4, **TINY_CLS)
    with pytest.raises(ValueError, match="mode must be loss, predict or tensor, got 'train'"):
        model(_batch([20]), mode='train')


TOKEN_OPS = [n for n in sorted(ATTENTION.module_dict)
             if ATTENTION.get(n).layout == 'tokens' and ATTENTION.get(n).kind != 'pool']


@pytest.mark.parametrize('name', TOKEN_OPS)
def test_every_token_op_trains_in_the_pct_demo_network(name):
    """The PCT demo network (configs/pct/pct-tiny_...-primitives-256.py, slimmed) with the op in its
    attention layers: a few Adam steps on one ragged batch, the loss is finite and falls, the op's
    weights move, and the layer structure follows the op's kind."""
    from mmengine.config import Config
    cfg = Config.fromfile('configs/pct/pct-tiny_1xb16-8e_synthetic-primitives-256.py').model
    cfg = dict(cfg, attn=dict(type=name), neighbor_stages=((16, 8, 32), (16, 8, 32)), num_layers=2,
               encoder_mlp=(32, 32), embed_channels=(16, 16), fuse_channels=64, head_channels=(32,),
               dropout=0.0)
    cfg.pop('type')
    torch.manual_seed(0)
    model = PCTClassifier(**cfg).train()
    layer = model.encoder.layers[0]
    assert layer.mode == ('offset' if ATTENTION.get(name).kind == 'attention' else 'none')
    supports_mask = ATTENTION.get(name).supports_mask
    batch = _batch([32, 24, 32, 28] if supports_mask else [32] * 4, classes=6)
    assert_learns(lambda: model(batch, mode='loss')['loss'], model, layer.attn, name=name)


def test_csra_pool_replaces_max_pooling_and_the_classifier():
    """``pool=ResidualAttention``: logits straight from the fused point features by class-specific
    attention (no MLP head); ragged clouds equal clouds one by one (padding masked), and it learns."""
    model = PCTClassifier(num_classes=4, pool=dict(type='ResidualAttention', num_heads=2), **TINY_CLS)
    assert model.head is None and model.pool.dim == TINY_CLS['fuse_channels'] and model.pool.num_classes == 4
    batch = _batch([40, 25, 33])
    model.eval()
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model(Batch.from_data_list([d])) for d in batch.to_data_list()])
        y, mask = model.point_features(batch)
        torch.testing.assert_close(together, model.pool(y, mask=mask))
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    model.train()
    assert_learns(lambda: model(batch, mode='loss')['loss'], model, model.pool, name='ResidualAttention')
    with pytest.raises(ValueError, match="pool must be a pool op .* got ExternalAttention of kind 'attention'"):
        PCTClassifier(num_classes=4, pool=dict(type='ExternalAttention'), **TINY_CLS)
    with pytest.raises(ValueError, match='pool config sets num_classes=3 but the model has 4 classes'):
        PCTClassifier(num_classes=4, pool=dict(type='ResidualAttention', num_classes=3), **TINY_CLS)
