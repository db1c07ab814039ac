# Deformable attention without GridSample: the exported graph samples the
# value maps with Gather + index arithmetic (bilinear, zero padding,
# align_corners=False: the same function as F.grid_sample). For runtimes
# without GridSample (ncnn, RKNN, TFLite, TensorRT < 8.5) or with a broken
# one (NVIDIA/TensorRT#4813). dfine_mmdet extension key, read by the export
# rewriters of dfine_mmdet/deploy/deform_attn_sampler.py; the model config
# and the checkpoint are unchanged.
deform_attn_sampler = 'gather'
