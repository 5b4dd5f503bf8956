# PCT with ResT's EMSA (sr_ratio 1: points have no grid to reduce)
# in place of each offset-attention map, inside PCT's offset structure x + LBR(x - op(x)) (as
# pct-ea_*); everything else as the PCT recipe.
_base_ = ['./pct_1xb32-250e_modelnet40-1024.py']
model = dict(attn=dict(_delete_=True, type='EMSA'), attn_mode='offset')
