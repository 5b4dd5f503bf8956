# PCT with MUSE's attention + convolutions over the token order
# in place of each offset-attention map, inside PCT's offset structure x + LBR(x - op(x)) (as
# pct-ea_*); everything else as the PCT recipe.
_base_ = ['./pct_1xb32-250e_modelnet40-1024.py']
model = dict(attn=dict(_delete_=True, type='MUSEAttention'), attn_mode='offset')
