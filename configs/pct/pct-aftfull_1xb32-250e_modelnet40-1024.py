# PCT with AFT-full (w covers up to max_len=1024 points)
# in place of each offset-attention map, inside PCT's offset structure x + LBR(x - op(x)) (as
# pct-ea_*); everything else as the PCT recipe.
_base_ = ['./pct_1xb32-250e_modelnet40-1024.py']
model = dict(attn=dict(_delete_=True, type='AFTFull'), attn_mode='offset')
