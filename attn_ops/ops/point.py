"""Local attention on point clouds: the Point Transformer layer (Zhao, Jiang, Jia, Torr & Koltun,
"Point Transformer", ICCV 2021, arXiv:2012.09164), vector attention over the k nearest points.

The message passing is torch-geometric's own ``PointTransformerConv`` (imported when the op is
built: the op library itself needs torch and mmengine only); the kNN graph comes from
:func:`attn_ops.point_ops.knn_ragged` (``torch_cluster`` when installed), within each cloud.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import _shape
from ..point_ops import knn_ragged
from ..registry import ATTENTION
from .base import AttentionOp

PYG_REQUIREMENT = 'torch-geometric==2.7.0'


def _point_transformer_conv():
    """torch-geometric's ``PointTransformerConv``, or an ImportError naming the pinned package."""
    try:
        from torch_geometric.nn import PointTransformerConv
    except ImportError as err:
        raise ImportError(f'PointTransformerAttention runs on torch_geometric.nn.PointTransformerConv: '
                          f'pip install {PYG_REQUIREMENT} (import failed: {err})') from err
    return PointTransformerConv


@ATTENTION.register_module()
class PointTransformerAttention(AttentionOp):
    r"""Point Transformer layer: vector self-attention over the k nearest points of each point.

    .. math::
        y_i = \sum_{j \in \mathcal{N}(i)} \mathrm{softmax}_{j \in \mathcal{N}(i)}\big(\gamma(\varphi(x_i)
        - \psi(x_j) + \delta_{ij})\big) \odot \big(\alpha(x_j) + \delta_{ij}\big),\qquad
        \delta_{ij} = \theta(p_i - p_j)

    The softmax runs over the neighbours j of point i, separately for every channel (vector
    attention: one weight per channel and neighbour). :math:`\varphi, \psi, \alpha` are linear maps
    without bias (PyG's ``lin_dst``, ``lin_src``, ``lin``); :math:`\theta` (position encoding) and
    :math:`\gamma` (attention MLP) are two linear layers with a ReLU between, as the paper states.
    :math:`\mathcal{N}(i)` is the k nearest points of i's own cloud (all of them when it has fewer),
    i included: it is its own nearest point; should a duplicate point take its slot, i is added
    (k + 1 neighbours), as PyG's self loops do. Padded tokens are no points: they never enter a
    neighbourhood and their outputs are zero.

    PyG's ``PointTransformerConv`` computes exactly this formula (its docstring names
    :math:`p_j - p_i` as the input of :math:`\theta`, its code uses :math:`p_i - p_j`, the paper's).
    The official code (hszhao/point-transformer) differs from the paper: batch norm inside
    :math:`\theta` and :math:`\gamma`, biases on the q/k/v maps, :math:`\gamma` ending in C/8 weights
    shared by 8 channel groups (``share_planes``), and the signs :math:`\psi - \varphi`,
    :math:`p_j - p_i` (a re-parametrisation). We follow the paper; :math:`\theta`'s hidden width is
    the official code's (``Linear(3, 3)``). The residual and the linear layers around the layer
    (the paper's Point Transformer block) are the caller's (``kind='attention'``).

    Args:
        dim: channels C.
        k: neighbours per point, itself included (paper: 16).
        pos_dim: coordinates D of the positions (3). Positions with fewer coordinates are
            zero-padded: the layout adapter's pixel grid (row, col) lies in the plane z = 0.
        pos_hidden: hidden width of :math:`\theta` (default ``pos_dim``, the official code's).
        attn_hidden: hidden width of :math:`\gamma` (default ``dim``).

    Initialisation: PyG's and ``nn.Linear``'s (Kaiming-uniform weights).

    Shapes: ``forward(x, *, pos, mask=None, return_attn=False)``: ``x`` (B, N, C), ``pos``
    (B, N, D) with 1 <= D <= ``pos_dim`` (required; the PCT networks' ``AttentionBlock`` hands each
    layer's point positions, the layout adapter hands a map's pixel (row, col)), ``mask`` (B, N)
    -> (B, N, C). ``return_attn=True`` also returns the weights (B, C, N, N): the weight of point j
    in point i's output for each channel (the channels are vector attention's heads), zero outside
    :math:`\mathcal{N}(i)`, each row summing to one per channel; memory O(B C N^2), for analysis at
    small N. ``forward_ragged(x, pos, batch)`` takes a PyG batch (P, C), (P, D), (P,) -> (P, C).
    Cost O(N k C) for the attention, O(N^2) distances for the kNN search (chunked).

    Catalogue: no counterpart (the catalogue has no attention on point clouds)
    """

    supports_mask = True
    attn_form = 'dense'
    paper = 'Point Transformer (Zhao et al., ICCV 2021)'
    complexity = 'O(N k) + kNN O(N^2)'

    def __init__(self, dim: int, k: int = 16, *, pos_dim: int = 3, pos_hidden: Optional[int] = None,
                 attn_hidden: Optional[int] = None):
        super().__init__()
        conv_cls = _point_transformer_conv()
        if k < 1 or pos_dim < 1:
            raise ValueError(f'PointTransformerAttention: k and pos_dim must be >= 1, got k={k}, pos_dim={pos_dim}')
        self.dim, self.k, self.pos_dim = dim, k, pos_dim
        pos_hidden = pos_hidden or pos_dim
        attn_hidden = attn_hidden or dim
        pos_nn = nn.Sequential(nn.Linear(pos_dim, pos_hidden), nn.ReLU(), nn.Linear(pos_hidden, dim))
        attn_nn = nn.Sequential(nn.Linear(dim, attn_hidden), nn.ReLU(), nn.Linear(attn_hidden, dim))
        # self loops are added once in graph(), so that both paths see the same neighbourhoods
        self.conv = conv_cls(dim, dim, pos_nn=pos_nn, attn_nn=attn_nn, add_self_loops=False)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, k={self.k}, pos_dim={self.pos_dim}'

    # ------------------------------------------------------------------------------ inputs
    def _check_pos(self, pos: Optional[Tensor], x: Tensor, ragged: bool = False) -> Tensor:
        """``pos`` matching ``x``, zero-padded to ``pos_dim`` coordinates, in ``x``'s dtype."""
        name = type(self).__name__
        lead = x.shape[:-1]
        want = '(P, D)' if ragged else '(B, N, D)'
        if pos is None:
            raise ValueError(f'{name} needs the point positions: call it as op(x, pos=pos) with pos {want} '
                             f'= {tuple(lead)} x D, 1 <= D <= {self.pos_dim} (the PCT networks\' AttentionBlock '
                             'hands each layer\'s positions; the layout adapter hands a map\'s pixel (row, col))')
        if (not isinstance(pos, Tensor) or pos.dim() != len(lead) + 1 or tuple(pos.shape[:-1]) != tuple(lead)
                or not 1 <= pos.shape[-1] <= self.pos_dim):
            got = _shape(pos) if isinstance(pos, Tensor) else type(pos).__name__
            raise ValueError(f'{name} expects pos of shape {want} = {tuple(lead)} x D (the points of x '
                             f'{_shape(x)}), 1 <= D <= pos_dim={self.pos_dim}, got {got}')
        if pos.shape[-1] < self.pos_dim:
            pos = F.pad(pos, (0, self.pos_dim - pos.shape[-1]))
        return pos.to(x.dtype)

    def graph(self, pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        """The kNN ``edge_index`` (2, E) of a ragged batch, within each cloud, with one self loop per
        point: source = neighbour j, target = centre i."""
        from torch_geometric.utils import add_self_loops, remove_self_loops
        edge_index = knn_ragged(pos.detach(), pos.detach(), self.k, batch, batch)
        edge_index, _ = remove_self_loops(edge_index)
        return add_self_loops(edge_index, num_nodes=pos.shape[0])[0]

    # ------------------------------------------------------------------------------ forward
    def forward_ragged(self, x: Tensor, pos: Tensor, batch: Optional[Tensor] = None, *,
                       return_attn: bool = False):
        """The layer on a PyG batch: ``x`` (P, C), ``pos`` (P, D), ``batch`` (P,) sorted cloud ids
        (None: one cloud) -> (P, C). ``return_attn=True`` also returns the weights per edge (E, C)
        and the ``edge_index`` (2, E) they belong to."""
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            got = _shape(x) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f'{name}.forward_ragged expects x of shape (P, C) with C={self.dim}, got {got}')
        pos = self._check_pos(pos, x, ragged=True)
        if x.shape[0] == 0:   # no point at all: an empty output that still belongs to the graph
            out = self.conv.lin(x)
            return (out, out, x.new_zeros(2, 0, dtype=torch.long)) if return_attn else out
        edge_index = self.graph(pos, batch)
        if not return_attn:
            return self.conv(x, pos, edge_index)
        return (*self._explicit(x, pos, edge_index), edge_index)

    def _explicit(self, x: Tensor, pos: Tensor, edge_index: Tensor):
        """PyG's message and aggregation written out, keeping the weights: (P, C), (E, C)."""
        from torch_geometric.utils import scatter, softmax
        conv, (src, dst) = self.conv, edge_index
        delta = conv.pos_nn(pos[dst] - pos[src])
        logits = conv.attn_nn(conv.lin_dst(x)[dst] - conv.lin_src(x)[src] + delta)
        weights = softmax(logits, dst, num_nodes=x.shape[0])
        out = scatter(weights * (conv.lin(x)[src] + delta), dst, dim=0, dim_size=x.shape[0], reduce='sum')
        return out, weights

    def forward(self, x: Tensor, *, pos: Optional[Tensor] = None, mask: Optional[Tensor] = None,
                return_attn: bool = False):
        self.check_input(x, mask, return_attn)
        pos = self._check_pos(pos, x)
        b, n, _ = x.shape
        real = mask if mask is not None else torch.ones(b, n, dtype=torch.bool, device=x.device)
        batch = torch.arange(b, device=x.device).repeat_interleave(real.sum(1))
        out = self.forward_ragged(x[real], pos[real], batch, return_attn=return_attn)
        out, weights, edge_index = out if return_attn else (out, None, None)
        y = out.new_zeros(b, n, out.shape[-1])
        y[real] = out
        if not return_attn:
            return y
        where = real.nonzero()                        # (P, 2): sample and token of each real point
        src, dst = where[edge_index[0]], where[edge_index[1]]
        dense = weights.new_zeros(b, self.dim, n, n)
        dense[dst[:, 0], :, dst[:, 1], src[:, 1]] = weights
        return y, dense
