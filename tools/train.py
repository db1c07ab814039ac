"""Train with a (plugin) config, without MIM.

    python tools/train.py configs/dfine/<config>.py [--work-dir DIR] [--amp] \\
        [--resume] ...
    # DDP, also on CPU (gloo)
    torchrun --nproc_per_node 2 tools/train.py CFG --launcher pytorch

Same arguments as MMDetection's ``tools/train.py`` (it is run as-is); see
``dfine_mmdet/launch.py`` for the CPU-DDP handling.
"""
from dfine_mmdet.launch import run_mmdet_tool

if __name__ == '__main__':
    run_mmdet_tool('train')
