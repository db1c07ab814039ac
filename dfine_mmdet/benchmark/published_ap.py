"""Published COCO box AP of the models ``tools/benchmark/compare.py`` compares.

``compare.py --ap`` (no values) plots the latency it measures against these
numbers, so a speed/accuracy chart can be drawn without training or
downloading anything. Every value is the COCO val2017 box AP (%) that the
model's authors or MMDetection's model zoo published for the checkpoint of
that exact config, at that config's own test resolution:

* D-FINE N/S/M/L/X: the official README, "Model Zoo / COCO" table
  (``Peterande/D-FINE`` at 4a1f73a, ``README.md``; 640x640).
* RTMDet, YOLOX, DINO, Deformable DETR: MMDetection's model-zoo metadata,
  ``configs/<model>/metafile.yml`` (shipped in the installed package as
  ``mmdet/.mim/configs/<model>/metafile.yml``, entry ``box AP`` of the config
  named here). ``tests/test_docs/test_published_ap.py`` re-reads those files
  and fails if a value here differs. YOLOX-tiny's test pipeline is 416x416;
  compare.py times every model at ``--size`` (640 by default).

The keys are the row labels of compare.py's default set; :func:`lookup` also
accepts the config file name, so
``compare.py mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py --ap`` finds RTMDet-s.
"""
import os.path as osp
from typing import Dict, NamedTuple, Optional


class PublishedAP(NamedTuple):
    """One published result: ``ap`` in %, ``config`` the file it belongs to
    (``mmdet::`` for MMDetection's), ``source`` where the number is written."""
    ap: float
    config: str
    source: str


_DFINE_SRC = 'Peterande/D-FINE README.md (Model Zoo, COCO), commit 4a1f73a'


def _mmdet_src(model: str) -> str:
    return f'MMDetection configs/{model}/metafile.yml (box AP)'


#: label -> published COCO val2017 box AP (%)
PUBLISHED_COCO_AP: Dict[str, PublishedAP] = {
    'D-FINE-N':
    PublishedAP(42.8, 'configs/dfine/dfine_hgnetv2_n_coco.py', _DFINE_SRC),
    'D-FINE-S':
    PublishedAP(48.5, 'configs/dfine/dfine_hgnetv2_s_coco.py', _DFINE_SRC),
    'D-FINE-M':
    PublishedAP(52.3, 'configs/dfine/dfine_hgnetv2_m_coco.py', _DFINE_SRC),
    'D-FINE-L':
    PublishedAP(54.0, 'configs/dfine/dfine_hgnetv2_l_coco.py', _DFINE_SRC),
    'D-FINE-X':
    PublishedAP(55.8, 'configs/dfine/dfine_hgnetv2_x_coco.py', _DFINE_SRC),
    'RTMDet-tiny':
    PublishedAP(40.9, 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
                _mmdet_src('rtmdet')),
    'RTMDet-s':
    PublishedAP(44.5, 'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py',
                _mmdet_src('rtmdet')),
    'YOLOX-tiny':
    PublishedAP(32.0, 'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py',
                _mmdet_src('yolox')),
    'YOLOX-s':
    PublishedAP(40.5, 'mmdet::yolox/yolox_s_8xb8-300e_coco.py',
                _mmdet_src('yolox')),
    'DINO-R50-4scale':
    PublishedAP(49.0, 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
                _mmdet_src('dino')),
    'DeformableDETR-R50':
    PublishedAP(
        44.3, 'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
        _mmdet_src('deformable_detr')),
}


def _basename(cfg: str) -> str:
    return osp.basename(cfg.split('::')[-1])


def lookup(label: str, config: Optional[str] = None) -> Optional[PublishedAP]:
    """The published AP of a compare.py row: by its label, else by the file
    name of its config; ``None`` when neither is known."""
    if label in PUBLISHED_COCO_AP:
        return PUBLISHED_COCO_AP[label]
    if config:
        name = _basename(config)
        for entry in PUBLISHED_COCO_AP.values():
            if _basename(entry.config) == name:
                return entry
    return None
