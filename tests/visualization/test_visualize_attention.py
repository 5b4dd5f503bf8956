"""tools/visualize_attention.py and projects/attention_maps.py: weights collected by hooks equal the
formulas written out, query maps and memory units are drawn where the weights are, clear errors."""
import glob
import importlib.util
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from attn_ops import LayoutAdapter, build_attention
from attn_ops.layouts import map_to_tokens
from projects.attention_maps import AttentionRecorder, attention_layers, query_entropy, select_layers, unit_mass
from projects.colors import MARK_COLOR

from .helpers import parse_ply, rgb_of

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PARTS_CFG = (sorted(glob.glob(osp.join(ROOT, 'configs', 'pct', 'pct-tiny_*synthetic-parts*.py'))) or [''])[0]
SEG_CFG = osp.join(ROOT, 'configs', 'eanet', 'eanet_r18-d8_1xb8-1k_demo-shapes-64x64.py')


def _tool():
    path = osp.join(ROOT, 'tools', 'visualize_attention.py')
    spec = importlib.util.spec_from_file_location('visualize_attention', path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules['visualize_attention'] = mod
    spec.loader.exec_module(mod)
    return mod


class OnMap(nn.Module):
    """A tiny 'model': one op of ATTENTION on maps (token ops through the layout adapter)."""

    def __init__(self, cfg: dict, dim: int = 4):
        super().__init__()
        op = build_attention(cfg, dim=dim)
        self.attn = op if op.layout == 'map' else LayoutAdapter(op, 'map')

    def forward(self, x):
        return self.attn(x)


def _mhsa(scale: float = 1.0) -> OnMap:
    """Two heads of two channels; q = k = scale * x, v = x, hand-set."""
    model = OnMap(dict(type='MultiHeadAttention', num_heads=2, qkv_bias=False)).eval()
    with torch.no_grad():
        eye = torch.eye(4)
        model.attn.op.qkv.weight.copy_(torch.cat([scale * eye, scale * eye, eye]))
    return model


def _record(model, x, **kw):
    with AttentionRecorder(select_layers(model), **kw) as rec:
        with torch.no_grad():
            model(x)
    return rec.records


def _image_args(tool, tmp_path, *extra):
    return tool.parse_args(['cfg', 'ckpt', '--panel-size', '64', '--out', str(tmp_path), *extra])


def _hand_mhsa_rows(x: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax_keys(q_h k_h^T / sqrt(d)) per head, written out: (h, N, N)."""
    t = map_to_tokens(x)[0].double() * scale                  # (N, 4)
    out = []
    for h in range(2):
        q = t[:, 2 * h:2 * h + 2]
        logits = q @ q.T / np.sqrt(2)
        out.append(torch.exp(logits - logits.max(1, keepdim=True).values)
                   / torch.exp(logits - logits.max(1, keepdim=True).values).sum(1, keepdim=True))
    return torch.stack(out)


def test_query_heatmap_equals_the_row_by_hand(tmp_path):
    tool = _tool()
    torch.manual_seed(0)
    x = torch.randn(1, 4, 4, 4)
    records = _record(_mhsa(1.5), x)
    assert [(r.name, r.op, r.form, r.hw) for r in records] == [('attn', 'MultiHeadAttention', 'dense', (4, 4))]
    sample = tool.Sample('toy', records, image=np.full((16, 16, 3), 128, np.uint8))
    args = _image_args(tool, tmp_path, '--query', '5,9')
    res = tool.query_sheets(sample, tool.Canvas(sample, args), args)
    token = (9 * 4 // 16) * 4 + 5 * 4 // 16                    # pixel (5, 9) of 16 x 16 on a 4 x 4 grid: token 9
    hand = _hand_mhsa_rows(x, 1.5)
    assert [(m['head'], m['query']) for m in res[0]['maps']] == [(0, token), (1, token)]
    for m in res[0]['maps']:
        np.testing.assert_allclose(m['values'], hand[m['head'], token].numpy(), rtol=1e-5, atol=1e-7)
    assert osp.isfile(res[0]['image']) and res[0]['image'].endswith('toy_query0.png')


def test_focused_query_shows_its_region_and_is_marked(tmp_path):
    """Keys of the top-left quadrant match the query, the others do not: the panel is hot there."""
    tool = _tool()
    x = torch.zeros(1, 4, 4, 4)
    x[0, 0, :2, :2] = 1.0          # channel 0 (head 0): top-left 2 x 2 tokens
    x[0, 1, :, :] = 0.3
    x[0, 1, :2, :2] = 0.0
    records = _record(_mhsa(6.0), x)
    # head 0 of query token 0 puts > 98% of its weight on the four top-left tokens
    row = records[0].weights[0, 0, 0].view(4, 4)
    assert row[:2, :2].sum() > 0.98
    ent = query_entropy(records[0].weights)[0].view(4, 4)
    assert ent[:2, :2].max() < ent[2:, 2:].min()               # the region's queries are the focused ones
    sample = tool.Sample('toy', records, image=np.full((16, 16, 3), 128, np.uint8))
    args = _image_args(tool, tmp_path, '--query', '1,1', '--heads', '0')
    panel = tool.Canvas(sample, args).panel(records[0], row.flatten().numpy(), 'h0', marker=(1.0, 1.0))
    img = panel.image.astype(int)                               # 64 x 64: 4 display pixels per input pixel
    redness = img[..., 0] - img[..., 2]
    assert redness[14:28, 14:28].min() > 40                     # inside the quadrant (away from the marker): red
    assert redness[40:, 40:].max() < -40                        # the far quadrant: blue
    marker = (np.abs(img - np.array(MARK_COLOR)).sum(-1) < 30)
    ys, xs = np.nonzero(marker)
    assert marker.sum() > 10 and abs(xs.mean() - 5.5) < 3 and abs(ys.mean() - 5.5) < 3   # ringed at (1, 1) x 4
    # the sheet written by the tool carries the same picture and the ring
    png = tool.query_sheets(sample, tool.Canvas(sample, args), args)[0]['image']
    sheet = np.asarray(Image.open(png).convert('RGB')).astype(int)
    assert (np.abs(sheet - np.array(MARK_COLOR)).sum(-1) < 30).sum() > 10
    assert ((sheet[..., 0] - sheet[..., 2]) > 40).sum() > 300


def test_memory_units_by_hand_ranked_by_mass(tmp_path):
    """ExternalAttention with hand-set memories: S panels per sample, each the unit's column of
    L1_S(softmax_N(x M_k^T)), ranked by the mass summed over both samples."""
    tool = _tool()
    s_units = 5
    model = OnMap(dict(type='ExternalAttention', S=s_units)).eval()
    mk = torch.arange(20, dtype=torch.float32).view(5, 4).sin()
    with torch.no_grad():
        model.attn.op.mk.weight.copy_(mk)
    torch.manual_seed(1)
    xs = [torch.randn(1, 4, 3, 4), torch.randn(1, 4, 3, 4)]
    samples = [tool.Sample(f's{i}', _record(model, x), image=np.full((6, 8, 3), 90, np.uint8))
               for i, x in enumerate(xs)]
    args = _image_args(tool, tmp_path, '--units', '2')
    res = tool.unit_sheets(samples, [tool.Canvas(s, args) for s in samples], args)
    assert [r['kind'] for r in res] == ['units', 'units', 'units-across']
    hands = []
    for x in xs:
        a = torch.softmax(map_to_tokens(x)[0].double() @ mk.double().T, dim=0)       # over the N tokens
        hands.append(a / (a.sum(1, keepdim=True) + 1e-9))                           # L1 over the S units
    mass = sum(h.sum(0) for h in hands)
    order = torch.argsort(mass, descending=True).tolist()
    for r, hand in zip(res[:2], hands):
        assert len(r['maps']) == s_units                                            # the grid has S panels
        assert [m['unit'] for m in r['maps']] == order
        for m in r['maps']:
            np.testing.assert_allclose(m['values'], hand[:, m['unit']].numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(sum(unit_mass(s.records[0]) for s in samples)[0].numpy(), mass.numpy(), rtol=1e-5)
    # the across-samples sheet: per sample the input and the 2 strongest units, cells of 64 x 85 pixels
    assert Image.open(res[2]['image']).size[0] == 2 * 4 + 3 * round(64 * 8 / 6) + 2 * 4


def test_layer_errors_name_what_exists():
    model = nn.Module()
    model.mix = OnMap(dict(type='MultiHeadAttention', num_heads=2))
    model.gate = OnMap(dict(type='SKAttention', reduction=1, L=2, groups=1))
    layers = attention_layers(model)
    assert list(layers) == ['mix.attn', 'gate.attn']           # the adapter, not the op inside it
    assert list(select_layers(model)) == ['mix.attn']          # by default: the layers with a map
    assert list(select_layers(model, ['MultiHeadAttention'])) == ['mix.attn']
    assert list(select_layers(model, ['mix.*'])) == ['mix.attn']
    with pytest.raises(ValueError, match=r"--layer 'mix.atn' matches no attention layer of Module .*Did you mean: "
                                         r"mix.attn.*Attention layers found: mix.attn \(MultiHeadAttention, kind "
                                         r"'attention', attn_form 'dense'\), gate.attn \(SKAttention"):
        select_layers(model, ['mix.atn'])
    with pytest.raises(ValueError, match=r"gate.attn is SKAttention, an op of kind 'attention' that forms no "
                                         r"attention map \(attn_form=None\).*Layers with a map: mix.attn"):
        select_layers(model, ['gate.attn'])
    only_gate = nn.Module()
    only_gate.gate = model.gate
    with pytest.raises(ValueError, match='Module has no attention layer that forms an attention map over positions '
                                         r".*attention layers found: gate.attn \(SKAttention"):
        select_layers(only_gate)
    model.cbam = OnMap(dict(type='CBAM', reduction=2, kernel_size=3))   # a gate map, broadcast to the input
    assert list(select_layers(model)) == ['mix.attn']          # gates are left out by default ...
    with pytest.raises(ValueError, match=r"cbam.attn is CBAM, whose weights are a 'gate' \(broadcast to its input\)"):
        select_layers(model, ['CBAM'])                         # ... and refused by name


def test_render_values_colours_points_and_marks(two_blobs):
    """The sphere's points carry the high values: the red pixels are where the sphere projects."""
    from projects.pointcloud.visualization import MatplotlibRenderer, frame_camera, render_values
    pts, labels = two_blobs
    cam = frame_camera(pts, 120, 100)
    img, colours = render_values(pts, (labels == 0).astype(float), MatplotlibRenderer(4), cam, marks=pts[:1])
    assert img.shape == (100, 120, 3) and colours.shape == (200, 3)
    uv = cam.project(pts)[0]
    red = (img[..., 0].astype(int) - img[..., 2] > 60) & (img[..., 1] < 60)
    blue = (img[..., 2].astype(int) - img[..., 0] > 60) & (img[..., 1] < 60)
    assert abs(np.nonzero(red)[1].mean() - uv[:100, 0].mean()) < 8
    assert abs(np.nonzero(blue)[1].mean() - uv[100:, 0].mean()) < 8
    assert (np.abs(img.astype(int) - np.array(MARK_COLOR)).sum(-1) < 30).sum() > 5


def _catch_input(module: nn.Module) -> dict:
    """``{'x': the first input of the module's first call}``, caught by a hook that changes nothing."""
    seen = {}

    def hook(mod, args, output):
        seen.setdefault('x', args[0].detach().clone())
    module.register_forward_hook(hook)
    return seen


def _offset_rows(x: torch.Tensor, w_qk: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """PCT's offset-attention map written out: (N, N) with row j = the weights A_ij over inputs i."""
    q = x[0].double() @ w_qk.double().T
    soft = torch.softmax(q @ q.T, dim=-1)                      # softmax over j
    a = soft / (eps + soft.sum(0, keepdim=True))               # L1 over i
    return a.T


@pytest.mark.e2e
@pytest.mark.skipif(not osp.isfile(PARTS_CFG), reason='point-cloud parts demo config not present')
def test_tool_on_point_cloud_checkpoint(tmp_path, capsys):
    """A hand-set checkpoint of the PCT parts demo: the tool's map for a query point equals the
    offset-attention row recomputed from the checkpoint; PNG, coloured PLY and index page exist."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from projects import runtime
    cfg = Config.fromfile(PARTS_CFG)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    w_qk = torch.linspace(-1, 1, model.encoder.layers[1].attn.qk.weight.numel()).view_as(
        model.encoder.layers[1].attn.qk.weight) * 3.0
    with torch.no_grad():
        model.encoder.layers[1].attn.qk.weight.copy_(w_qk)
    ckpt = tmp_path / 'hand.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    tool = _tool()
    opts = ['--cfg-options', 'val_dataloader.dataset.num_samples=3']
    res = tool.main([PARTS_CFG, str(ckpt), '--index', '2', '--layer', 'encoder.layers.1.attn', '--query-index', '7',
                     '--renderer', 'matplotlib', '--panel-size', '80', '--up', 'z', '--out', str(tmp_path / 'out'),
                     *opts])
    # the layer's input, caught independently of the tool, and the formula on the checkpoint's weights
    loaded = runtime.build_model(runtime.load_config(PARTS_CFG, {'val_dataloader.dataset.num_samples': 3}), str(ckpt))
    seen = _catch_input(loaded.encoder.layers[1].attn)
    dataset = runtime.build_dataset(runtime.load_config(PARTS_CFG, {'val_dataloader.dataset.num_samples': 3}), 'val')
    with torch.no_grad():
        loaded(**loaded.data_preprocessor(runtime.build_collate(cfg, 'val')([dataset[2]])), mode='tensor')
    hand = _offset_rows(seen['x'], w_qk)
    assert len(res) == 1 and res[0]['kind'] == 'query'
    (m,) = res[0]['maps']
    assert (m['layer'], m['op'], m['head'], m['query']) == ('encoder.layers.1.attn', 'OffsetAttention', 0, 7)
    np.testing.assert_allclose(m['values'], hand[7].numpy(), rtol=1e-4, atol=1e-7)
    assert m['values'].max() > 5 / len(m['values'])            # the hand-set weights make it peaked
    img = np.asarray(Image.open(res[0]['image']).convert('RGB')).astype(int)
    assert img.std() > 20 and (np.abs(img - np.array(MARK_COLOR)).sum(-1) < 30).sum() > 5
    links = dict(res[0]['links'])
    saved = np.load(links.pop('weights (npz)'))                 # the drawn values, beside the sheet
    assert saved.files == ['encoder.layers.1.attn.head0.query7']
    np.testing.assert_array_equal(saved['encoder.layers.1.attn.head0.query7'], m['values'])
    (ply,) = links.values()
    rec = parse_ply(ply)
    assert len(rec) == 256 and len(np.unique(rgb_of(rec), axis=0)) > 5
    page = (tmp_path / 'out' / 'index.html').read_text()
    assert 'src="val_00002_query0.png"' in page and 'val_00002_q0_l0_h0.ply' in page
    out = capsys.readouterr().out
    assert res[0]['image'] in out and 'index page:' in out
    with pytest.raises(ValueError, match=r"--layer 'encoder.layers.9.attn' matches no attention layer of PCTPartSeg"
                                         r".*encoder.layers.0.attn \(OffsetAttention, kind 'block', attn_form "
                                         r"'dense'\), encoder.layers.1.attn"):
        tool.main([PARTS_CFG, str(ckpt), '--layer', 'encoder.layers.9.attn', '--out', str(tmp_path / 'x'), *opts])
    with pytest.raises(ValueError, match='--query X,Y picks pixels of an image; on clouds give --query-index'):
        tool.main([PARTS_CFG, str(ckpt), '--query', '3,4', '--out', str(tmp_path / 'x'), *opts])


@pytest.mark.e2e
@pytest.mark.skipif(not osp.isfile(SEG_CFG), reason='segmentation demo config not present')
def test_tool_on_segmentation_image_file(tmp_path):
    """The EANet demo config on an image file: one grid of all k memory units, each unit's map the
    double-normalised column recomputed from the checkpoint."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from projects import runtime
    cfg = Config.fromfile(SEG_CFG)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    ckpt = tmp_path / 'init.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta={}), ckpt)
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:40, 20:56] = (200, 40, 40)
    Image.fromarray(image).save(tmp_path / 'shape.png')
    tool = _tool()
    res = tool.main([SEG_CFG, str(ckpt), '--file', str(tmp_path / 'shape.png'), '--panel-size', '48', '--units', '4',
                     '--out', str(tmp_path / 'out')])
    assert [r['kind'] for r in res] == ['units', 'units-across']
    k = cfg.model.decode_head.attn.k
    maps = res[0]['maps']
    assert len(maps) == k and sorted(m['unit'] for m in maps) == list(range(k))
    # independently: the block's input and the official double normalisation on the checkpoint's weights
    model = runtime.build_model(runtime.load_config(SEG_CFG), str(ckpt))
    block = model.decode_head.attn.op
    seen = _catch_input(block)
    data = model.data_preprocessor(dict(inputs=[tool.pack_image(cfg, 'val', str(tmp_path / 'shape.png'))['inputs']]),
                                   False)
    with torch.no_grad():
        model(**data, mode='tensor')
        logits = block.linear_0(block.conv1(seen['x']).flatten(2))[0].double()      # (k, N)
    a = torch.softmax(logits, dim=1)
    a = a / (a.sum(0, keepdim=True) + 1e-9)
    for m in maps:
        np.testing.assert_allclose(m['values'], a[m['unit']].numpy(), rtol=1e-4, atol=1e-7)
    masses = np.array([a[m['unit']].sum().item() for m in maps])
    assert (np.diff(masses) <= 1e-6).all()                       # ranked by mass, strongest first
    assert osp.isfile(res[1]['image']) and osp.isfile(tmp_path / 'out' / 'index.html')
