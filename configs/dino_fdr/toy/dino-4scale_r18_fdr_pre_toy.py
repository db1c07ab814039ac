# dino-4scale_r18_fdr_toy.py with D-FINE's layer-0 pre head: the fixed FDR
# reference is the pre box sigmoid(delta(h_0) + logit(proposal)) instead of
# the raw two-stage proposal (DINOFDRHead.pre_refine).  Third model of
# tools/experiments/dino_fdr_toy.py.
_base_ = './dino-4scale_r18_fdr_toy.py'

model = dict(bbox_head=dict(pre_refine=True))
