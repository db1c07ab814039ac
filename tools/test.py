"""Evaluate a checkpoint with a (plugin) config, without MIM.

    python tools/test.py configs/dfine/<config>.py CHECKPOINT [--work-dir DIR] [--show-dir DIR] ...
    torchrun --nproc_per_node 2 tools/test.py CFG CKPT --launcher pytorch   # also on CPU (gloo)

Same arguments as MMDetection's ``tools/test.py`` (it is run as-is); see
``tools/_launch.py`` for the CPU-DDP handling.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _launch import run_mmdet_tool  # noqa: E402

if __name__ == '__main__':
    run_mmdet_tool('test')
