"""configs/dfine: every model config parses to the official architecture
(spec section 1.1) and carries the official test preprocessing."""
import glob
import os.path as osp

import pytest
from dfine_model_utils import CONFIG_DIR, load_config, resolved_model_cfg

# variant -> (backbone arch, neck in_channels, decoder layers, D, reg_scale,
#             decoder levels)
ARCH = {
    'n': ('B0', [512, 1024], 3, 128, 4.0, 2),
    's': ('B0', [256, 512, 1024], 3, 256, 4.0, 3),
    'm': ('B2', [384, 768, 1536], 4, 256, 4.0, 3),
    'l': ('B4', [512, 1024, 2048], 6, 256, 4.0, 3),
    'x': ('B5', [512, 1024, 2048], 6, 256, 8.0, 3),
}
FAMILIES = {'coco': 80, 'obj365': 366, 'obj2coco': 80}


def _all_config_files():
    return sorted(
        glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True))


@pytest.mark.parametrize('family', list(FAMILIES))
@pytest.mark.parametrize('variant', list(ARCH))
def test_variant_configs(variant, family):
    cfg = load_config(variant, family)
    arch, in_ch, layers, dims, reg_scale, levels = ARCH[variant]
    # the shared settings as DFINE fills them in from their source
    m = resolved_model_cfg(cfg)
    assert m.type == 'DFINE'
    assert m.backbone.arch == arch
    assert list(m.neck.in_channels) == in_ch
    assert m.decoder.num_layers == layers == m.bbox_head.num_pred_layer
    assert m.decoder.layer_cfg.embed_dims == dims == m.bbox_head.embed_dims
    assert m.bbox_head.bbox_coder.reg_scale == reg_scale
    assert m.bbox_head.bbox_coder.reg_max == 32
    assert m.decoder.layer_cfg.num_levels == levels == len(m.in_channels)
    assert list(m.neck.feat_strides) == list(m.feat_strides)
    assert m.bbox_head.num_classes == FAMILIES[family]
    assert m.dn_cfg.num_classes == FAMILIES[family]
    assert cfg.custom_imports['imports'] == ['dfine_mmdet']
    # official eval preprocessing: RGB in [0, 1], plain 640x640 resize
    pre = m.data_preprocessor
    assert list(pre.mean) == [0, 0, 0] and list(pre.std) == [255] * 3
    assert pre.bgr_to_rgb
    resize = [
        t for t in cfg.test_dataloader.dataset.pipeline
        if t['type'] == 'Resize'
    ][0]
    assert tuple(resize['scale']) == (640, 640)
    assert resize['keep_ratio'] is False
    assert resize['backend'] == 'pillow'


def test_no_machine_paths_in_configs():
    for path in _all_config_files():
        text = open(path).read()
        for bad in ('/work/', '/root/', '/home/', '/tmp/'):
            assert bad not in text, f'{path} contains {bad!r}'
