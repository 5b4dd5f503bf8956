"""tools/test.py --tta and --out in both domains, in this process."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from projects.pointcloud.predictions import load_prediction, prediction_files
from tests.tools.helpers import (CLS_CONFIG, PART_CONFIG, ROOT, SEG_CONFIG, demo_shapes, load_tool,
                                 untrained_checkpoint)

TEST = load_tool('test.py')
PC_TINY = ['test_dataloader.dataset.num_samples=8', 'test_dataloader.batch_size=4']


@pytest.fixture(scope='module')
def seg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('seg')
    data = demo_shapes(tmp / 'data')
    opts = [f'test_dataloader.dataset.data_root={data}', 'model.data_preprocessor.size=(32,32)']
    ckpt = untrained_checkpoint(SEG_CONFIG, str(tmp / 'seg.pth'), {opts[0].split('=')[0]: data})
    return tmp, ckpt, opts


def _test(config, ckpt, work, *args, options=()):
    return TEST.main([os.path.join(ROOT, config), ckpt, '--work-dir', str(work), *args,
                      '--cfg-options', *options])


def test_segmentation_tta_changes_predictions_and_reports_metrics(seg):
    tmp, ckpt, opts = seg
    plain = _test(SEG_CONFIG, ckpt, tmp / 'w0', '--out', str(tmp / 'plain'), options=opts)
    tta = _test(SEG_CONFIG, ckpt, tmp / 'w1', '--tta', '--out', str(tmp / 'tta'), options=opts)
    for metrics, out in ((plain, tmp / 'plain'), (tta, tmp / 'tta')):
        assert set(metrics) >= {'mIoU', 'mAcc', 'aAcc'} and 0 <= metrics['mIoU'] <= 100
        assert json.load(open(out / 'metrics.json')) == pytest.approx({k: float(v) for k, v in metrics.items()})
    names = sorted(f for f in os.listdir(tmp / 'plain') if f.endswith('.png'))
    assert names == ['00000.png', '00001.png'] == sorted(f for f in os.listdir(tmp / 'tta') if f.endswith('.png'))
    a = np.stack([np.asarray(Image.open(tmp / 'plain' / n)) for n in names])
    b = np.stack([np.asarray(Image.open(tmp / 'tta' / n)) for n in names])
    assert a.shape == b.shape == (2, 32, 32)
    assert len(np.unique(a)) > 1  # the untrained model does not predict one class everywhere
    assert (a != b).any(), 'multi-scale + flip averaging left every pixel unchanged'


@pytest.fixture(scope='module')
def pc_ckpts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('pc')
    return tmp, {c: untrained_checkpoint(c, str(tmp / f'{i}.pth')) for i, c in enumerate((CLS_CONFIG, PART_CONFIG))}


def test_pointcloud_out_writes_one_file_per_cloud(pc_ckpts):
    tmp, ckpts = pc_ckpts
    metrics = _test(CLS_CONFIG, ckpts[CLS_CONFIG], tmp / 'w', '--out', str(tmp / 'cls'), options=PC_TINY)
    assert set(metrics) >= {'OA', 'mAcc'} and 0 <= metrics['OA'] <= 100
    files = prediction_files(str(tmp / 'cls'))
    assert [os.path.basename(f) for f in files] == [f'{i:05d}.npz' for i in range(8)]
    preds = [load_prediction(f) for f in files]
    assert all(p['pred'].shape == (1,) and p['labels'].shape == (1,) and p['points'].shape == (256, 3)
               and p['probs'].shape == (6,) for p in preds)
    # SyntheticPrimitives labels cycle through the 6 classes; the accuracy is that of the files
    assert [int(p['labels'][0]) for p in preds] == [i % 6 for i in range(8)]
    oa = np.mean([p['pred'][0] == p['labels'][0] for p in preds])
    assert metrics['OA'] == pytest.approx(100 * oa)
    assert all(int(p['pred'][0]) == int(p['probs'].argmax()) for p in preds)

    metrics = _test(PART_CONFIG, ckpts[PART_CONFIG], tmp / 'w', '--out', str(tmp / 'part'), options=PC_TINY)
    assert set(metrics) >= {'ins_mIoU', 'cls_mIoU'}
    p = load_prediction(os.path.join(tmp / 'part', '00005.npz'))
    assert p['pred'].shape == p['labels'].shape == (256,) and p['points'].shape == (256, 3)
    assert int(p['category'][0]) == 1  # categories cycle: sample 5 is a table (parts 2, 3)
    assert set(np.unique(p['pred'])) <= {2, 3} and set(np.unique(p['labels'])) <= {2, 3}


def test_pointcloud_tta_votes(pc_ckpts):
    tmp, ckpts = pc_ckpts
    ckpt = ckpts[CLS_CONFIG]
    _test(CLS_CONFIG, ckpt, tmp / 'w', '--out', str(tmp / 'plain'), options=PC_TINY)
    one = _test(CLS_CONFIG, ckpt, tmp / 'w', '--tta', '--votes', '1', '--out', str(tmp / 'v1'), options=PC_TINY)
    four = _test(CLS_CONFIG, ckpt, tmp / 'w', '--tta', '--votes', '4', '--out', str(tmp / 'v4'), options=PC_TINY)
    assert set(one) >= {'OA', 'mAcc'} and set(four) >= {'OA', 'mAcc'}
    probs = {d: np.stack([load_prediction(f)['probs'] for f in prediction_files(str(tmp / d))])
             for d in ('plain', 'v1', 'v4')}
    np.testing.assert_allclose(probs['v1'], probs['plain'], atol=1e-6)  # one vote: the plain test
    assert np.abs(probs['v4'] - probs['plain']).max() > 1e-4             # rescaled views change the scores
    np.testing.assert_allclose(probs['v4'].sum(1), 1.0, atol=1e-5)       # a mean of distributions

    part = _test(PART_CONFIG, ckpts[PART_CONFIG], tmp / 'w', '--tta', '--votes', '3', options=PC_TINY)
    assert set(part) >= {'ins_mIoU', 'cls_mIoU'}


def test_clear_errors(seg, tmp_path, capsys):
    _, ckpt, opts = seg
    with pytest.raises(SystemExit):
        TEST.parse_args([SEG_CONFIG, ckpt, '--votes', '3'])
    assert '--votes needs --tta' in capsys.readouterr().err
    with pytest.raises(KeyError, match='--votes: the tta_pipeline of .* has no TestTimeVotes step'):
        _test(SEG_CONFIG, ckpt, tmp_path, '--tta', '--votes', '3', options=opts)
    with pytest.raises(KeyError, match=r'--tta needs tta_pipeline in .*s3dis'):
        TEST.build_cfg(TEST.parse_args([os.path.join(ROOT, 'configs/pct/pct_1xb32-100e_s3dis-area5-4096.py'),
                                        ckpt, '--tta']))


def test_votes_transform_and_model_units():
    from projects.pointcloud.models import PCTClassifier
    from projects.pointcloud.transforms import pointcloud_collate
    from projects.pointcloud.tta import PointCloudTTAModel, TestTimeVotes
    rng = np.random.RandomState(0)
    samples = [dict(pos=rng.rand(32, 3).astype(np.float32), label=i) for i in range(3)]
    votes = TestTimeVotes(num_votes=3, augment=[dict(type='RandomScaleShift', scale=(2.0, 3.0), shift=0.0)],
                          pack=dict(type='PackPointCloud'))
    views = [votes(dict(s)) for s in samples]
    assert [len(v) for v in views] == [3, 3, 3]
    assert torch.equal(views[0][0].pos, torch.from_numpy(samples[0]['pos']))          # view 0: as given
    ratio = views[0][1].pos / views[0][0].pos
    assert ((ratio >= 2.0 - 1e-5) & (ratio <= 3.0 + 1e-5)).all()                      # others: rescaled
    batch = pointcloud_collate(views)
    assert len(batch['inputs']) == 3 and batch['inputs'][0].num_graphs == 3

    net = PCTClassifier(num_classes=4, embed_channels=(8, 8), neighbor_stages=(), encoder_mlp=(), num_layers=1,
                        fuse_channels=16, head_channels=(8,)).eval()
    tta = PointCloudTTAModel(module=net).eval()
    out = tta.test_step(batch)
    with torch.no_grad():
        expect = torch.stack([net.logits(b).softmax(-1) for b in batch['inputs']]).mean(0)
    assert torch.allclose(torch.stack([o['logits'] for o in out]).softmax(-1), expect, atol=1e-6)
    assert [int(o['pred_label']) for o in out] == expect.argmax(-1).tolist()
    assert [int(o['gt_label']) for o in out] == [0, 1, 2]
    with pytest.raises(ValueError, match='num_votes must be >= 1'):
        TestTimeVotes(num_votes=0)
    with pytest.raises(ValueError, match='must keep every point'):
        tta.merge_preds([torch.zeros(5, 4), torch.zeros(6, 4)])


def test_prediction_writer_uses_the_sampler_order(tmp_path):
    """Each rank writes the samples its sampler gave it, under their dataset index."""
    from types import SimpleNamespace

    from torch_geometric.data import Batch, Data

    from projects.pointcloud.predictions import PointPredictionWriter
    loader = SimpleNamespace(batch_sampler=[[1, 3], [5]])  # rank 1 of 2 over 6 samples, batch 2
    runner = SimpleNamespace(test_loop=SimpleNamespace(dataloader=loader))
    hook = PointPredictionWriter(str(tmp_path))
    hook.before_test_epoch(runner)
    for b, idx in enumerate(loader.batch_sampler):
        batch = Batch.from_data_list([Data(pos=torch.full((4, 3), float(i))) for i in idx])
        outs = [dict(pred=torch.full((4,), i), gt=torch.zeros(4, dtype=torch.long)) for i in idx]
        hook.after_test_iter(runner, b, dict(inputs=batch), outs)
    files = prediction_files(str(tmp_path))
    assert [os.path.basename(f) for f in files] == ['00001.npz', '00003.npz', '00005.npz']
    for f, i in zip(files, (1, 3, 5)):
        p = load_prediction(f)
        assert (p['pred'] == i).all() and (p['points'] == i).all() and 'category' not in p
