"""Our PCT reproduces a PCT_Pytorch ``Pct`` (rebuilt here from its published structure) after
conversion of its state dict, to 1e-4 on eval-mode logits."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from projects.pointcloud.models import PCT

ROOT = Path(__file__).resolve().parents[2]
# key names and shapes of PCT_Pytorch's state dict (nn.DataParallel(Pct(40))), from shared/reference
KEYS = Path(__file__).with_name('pct_pytorch_keys.json')


def _load_converter():
    spec = importlib.util.spec_from_file_location(
        'pct_pytorch_converter', ROOT / 'tools' / 'model_converters' / 'pct_pytorch.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- the reference network, written from the structure of PCT_Pytorch model.py ----------

def ref_fps(xyz, npoint):
    """CUDA pointnet2 FPS: start at 0, then argmax of the running min distance."""
    b, n, _ = xyz.shape
    idx = torch.zeros(b, npoint, dtype=torch.long)
    dist = torch.full((b, n), 1e10)
    far = torch.zeros(b, dtype=torch.long)
    for i in range(npoint):
        idx[:, i] = far
        centre = xyz[torch.arange(b), far].view(b, 1, 3)
        dist = torch.minimum(dist, ((xyz - centre) ** 2).sum(-1))
        far = dist.max(-1)[1]
    return idx


def ref_index(points, idx):
    b = points.shape[0]
    bidx = torch.arange(b).view(b, *([1] * (idx.dim() - 1))).expand_as(idx)
    return points[bidx, idx]


def ref_knn(k, xyz, new_xyz):
    d = -2 * new_xyz @ xyz.transpose(1, 2)
    d += (new_xyz ** 2).sum(-1, keepdim=True) + (xyz ** 2).sum(-1).unsqueeze(1)
    return d.topk(k, dim=-1, largest=False, sorted=False)[1]


def ref_sample_and_group(npoint, nsample, xyz, points):
    b, _, _ = xyz.shape
    fps_idx = ref_fps(xyz, npoint)
    new_xyz = ref_index(xyz, fps_idx)
    new_points = ref_index(points, fps_idx)
    idx = ref_knn(nsample, xyz, new_xyz)
    grouped = ref_index(points, idx) - new_points.view(b, npoint, 1, -1)
    centre = new_points.view(b, npoint, 1, -1).repeat(1, 1, nsample, 1)
    return new_xyz, torch.cat([grouped, centre], dim=-1)


class RefLocalOp(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 1, bias=False)
        self.conv2 = nn.Conv1d(cout, cout, 1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm1d(cout), nn.BatchNorm1d(cout)

    def forward(self, x):
        b, n, s, d = x.shape
        x = x.permute(0, 1, 3, 2).reshape(-1, d, s)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.adaptive_max_pool1d(x, 1).view(b * n, -1)
        return x.reshape(b, n, -1).permute(0, 2, 1)


class RefSA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.q_conv = nn.Conv1d(c, c // 4, 1, bias=False)
        self.k_conv = nn.Conv1d(c, c // 4, 1, bias=False)
        self.q_conv.weight = self.k_conv.weight
        self.v_conv = nn.Conv1d(c, c, 1)
        self.trans_conv = nn.Conv1d(c, c, 1)
        self.after_norm = nn.BatchNorm1d(c)

    def forward(self, x):
        q = self.q_conv(x).permute(0, 2, 1)
        energy = q @ self.k_conv(x)
        attention = energy.softmax(-1)
        attention = attention / (1e-9 + attention.sum(dim=1, keepdim=True))
        x_r = self.v_conv(x) @ attention
        return x + F.relu(self.after_norm(self.trans_conv(x - x_r)))


class RefPtLast(nn.Module):
    def __init__(self, c=256):
        super().__init__()
        self.conv1 = nn.Conv1d(c, c, 1, bias=False)
        self.conv2 = nn.Conv1d(c, c, 1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm1d(c), nn.BatchNorm1d(c)
        self.sa1, self.sa2, self.sa3, self.sa4 = RefSA(c), RefSA(c), RefSA(c), RefSA(c)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x1 = self.sa1(x)
        x2 = self.sa2(x1)
        x3 = self.sa3(x2)
        x4 = self.sa4(x3)
        return torch.cat([x1, x2, x3, x4], dim=1)


class RefPct(nn.Module):
    def __init__(self, out=40):
        super().__init__()
        self.conv1 = nn.Conv1d(3, 64, 1, bias=False)
        self.conv2 = nn.Conv1d(64, 64, 1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm1d(64), nn.BatchNorm1d(64)
        self.gather_local_0 = RefLocalOp(128, 128)
        self.gather_local_1 = RefLocalOp(256, 256)
        self.pt_last = RefPtLast()
        self.conv_fuse = nn.Sequential(nn.Conv1d(1280, 1024, 1, bias=False), nn.BatchNorm1d(1024),
                                       nn.LeakyReLU(0.2))
        self.linear1 = nn.Linear(1024, 512, bias=False)
        self.bn6 = nn.BatchNorm1d(512)
        self.dp1 = nn.Dropout(0.5)
        self.linear2 = nn.Linear(512, 256)
        self.bn7 = nn.BatchNorm1d(256)
        self.dp2 = nn.Dropout(0.5)
        self.linear3 = nn.Linear(256, out)

    def forward(self, x):  # x: (B, 3, N)
        xyz = x.permute(0, 2, 1)
        b = x.shape[0]
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x))).permute(0, 2, 1)
        new_xyz, feat = ref_sample_and_group(512, 32, xyz, x)
        f0 = self.gather_local_0(feat)
        new_xyz, feat = ref_sample_and_group(256, 32, new_xyz, f0.permute(0, 2, 1))
        f1 = self.gather_local_1(feat)
        x = torch.cat([self.pt_last(f1), f1], dim=1)
        x = self.conv_fuse(x)
        x = F.adaptive_max_pool1d(x, 1).view(b, -1)
        x = self.dp1(F.leaky_relu(self.bn6(self.linear1(x)), 0.2))
        x = self.dp2(F.leaky_relu(self.bn7(self.linear2(x)), 0.2))
        return self.linear3(x)


def _randomise(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm1d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def test_reference_key_list_matches_published_one():
    ref = nn.DataParallel(RefPct())
    keys = [[k, list(v.shape)] for k, v in ref.state_dict().items()]
    assert keys == json.loads(KEYS.read_text())['keys']
    assert sum(p.numel() for p in ref.parameters()) == 2876136


def test_pct_parameter_count():
    assert sum(p.numel() for p in PCT(num_classes=40).parameters()) == 2876136


def test_converted_logits_match_reference(tmp_path):
    torch.manual_seed(0)
    ref = RefPct(40)
    _randomise(ref)
    ref.eval()
    path = tmp_path / 'model.t7'
    torch.save(nn.DataParallel(ref).state_dict(), path)

    conv = _load_converter()
    ours = PCT(num_classes=40)
    missing, unexpected = ours.load_state_dict(conv.load_pct_pytorch(str(path)), strict=True)
    ours.eval()
    x = torch.randn(2, 1024, 3)
    with torch.no_grad():
        want = ref(x.transpose(1, 2))
        got = ours(x)
    assert got.shape == (2, 40)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)

    # the CLI writes a checkpoint our model loads
    out = tmp_path / 'pct.pth'
    conv.main([str(path), str(out)])
    sd = torch.load(out, weights_only=True)['state_dict']
    assert set(sd) == set(ours.state_dict())


def test_converter_rejects_untied_qk_and_unknown_keys():
    conv = _load_converter()
    sd = nn.DataParallel(RefPct()).state_dict()
    sd['module.pt_last.sa2.k_conv.weight'] = sd['module.pt_last.sa2.k_conv.weight'] + 1
    with pytest.raises(ValueError, match='sa2.k_conv.weight differs'):
        conv.convert_pct_pytorch(sd)
    with pytest.raises(KeyError, match='unexpected key "extra.weight"'):
        conv.convert_pct_pytorch({'extra.weight': torch.zeros(1)})
