# PCT with External Attention (EANet, Guo et al. 2022, point-cloud experiment): each
# offset-attention map is replaced by External Attention (S=64 memory units) inside PCT's
# offset structure x + LBR(x - EA(x)); everything else as the PCT recipe.
_base_ = ['./pct_1xb32-250e_modelnet40-1024.py']
model = dict(attn=dict(_delete_=True, type='ExternalAttention', S=64), attn_mode='offset')
