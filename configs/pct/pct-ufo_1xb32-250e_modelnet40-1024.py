# PCT with UFO-ViT's linear attention
# in place of each offset-attention map, inside PCT's offset structure x + LBR(x - op(x)) (as
# pct-ea_*); everything else as the PCT recipe.
_base_ = ['./pct_1xb32-250e_modelnet40-1024.py']
model = dict(attn=dict(_delete_=True, type='UFOAttention'), attn_mode='offset')
