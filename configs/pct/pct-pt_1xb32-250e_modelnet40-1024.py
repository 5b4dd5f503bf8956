# PCT with the Point Transformer layer (Zhao et al., ICCV 2021: vector attention over the k = 16
# nearest points, relative position encoding) in place of each offset-attention map, inside PCT's
# offset structure x + LBR(x - op(x)) (as pct-ea_*); the layers get the positions of the 256
# points left by the neighbour-embedding stages. The paper's own block is residual around the
# layer: attn_mode='residual' (x + LBR(op(x))). Everything else as the PCT recipe.
_base_ = ['./pct_1xb32-250e_modelnet40-1024.py']
model = dict(attn=dict(_delete_=True, type='PointTransformerAttention', k=16), attn_mode='offset')
