"""Evaluate a checkpoint with a (plugin) config, without MIM.

    python tools/test.py configs/dfine/<config>.py CHECKPOINT \\
        [--work-dir DIR] [--show-dir DIR] ...
    # also on CPU (gloo)
    torchrun --nproc_per_node 2 tools/test.py CFG CKPT --launcher pytorch

Same arguments as MMDetection's ``tools/test.py`` (it is run as-is); see
``dfine_mmdet/launch.py`` for the CPU-DDP handling.
"""
from dfine_mmdet.launch import run_mmdet_tool

if __name__ == '__main__':
    run_mmdet_tool('test')
