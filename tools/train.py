"""Train with a (plugin) config, without MIM.

    python tools/train.py configs/dfine/<config>.py [--work-dir DIR] [--amp] [--resume] ...
    torchrun --nproc_per_node 2 tools/train.py CFG --launcher pytorch   # DDP, also on CPU (gloo)

Same arguments as MMDetection's ``tools/train.py`` (it is run as-is); see
``tools/_launch.py`` for the CPU-DDP handling.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _launch import run_mmdet_tool  # noqa: E402

if __name__ == '__main__':
    run_mmdet_tool('train')
