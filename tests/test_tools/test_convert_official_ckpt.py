"""tools/convert_official_ckpt.py: official D-FINE checkpoint -> MMDetection.

Uses the official random weights of the parity fixtures (N) as a stand-in for
a released checkpoint; the numerical parity of converted models is covered by
tests/test_models/test_dfine_parity.py.
"""
import importlib.util
import os.path as osp
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tests', 'test_models'))
from dfine_model_utils import config_path  # noqa: E402
from dfine_model_utils import (data_samples_for, official_random_state_dict,
                               parity_inputs)

from dfine_mmdet.checkpoint import CheckpointMismatchError  # noqa: E402
from dfine_mmdet.checkpoint.official import KEY_MAP  # noqa: E402
from dfine_mmdet.checkpoint.official import (convert_state_dict,
                                             default_config, detect_variant,
                                             extract_state_dict, map_key)


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'convert_official_ckpt',
        osp.join(ROOT, 'tools', 'convert_official_ckpt.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tool = _load_tool()


@pytest.fixture(scope='module')
def official_n(parity_dir):
    return official_random_state_dict(parity_dir, 'n')


@pytest.fixture(scope='module')
def converted_n(official_n, tmp_path_factory):
    """Released-format N file converted with the tool (default config)."""
    _, sd = official_n
    tmp = tmp_path_factory.mktemp('ckpt')
    src, dst = str(tmp / 'dfine_n_coco.pth'), str(tmp / 'dfine_n_mmdet.pth')
    torch.save({'model': sd}, src)
    info = tool.convert(src, dst, verbose=False)
    return info, dst


def test_every_official_key_is_mapped(parity_dir):
    """All keys of the five COCO variants map to a target, and the merged
    duplicates are the only collisions."""
    from official_random_weights import load_keys_spec
    for v in 'nsmlx':
        spec = load_keys_spec(
            osp.join(parity_dir, f'dfine_{v}_coco_keys.json'))
        targets = [map_key(k) for k, _, _ in spec]
        dupes = {t for t in targets if targets.count(t) > 1}
        assert dupes == {'decoder.up', 'decoder.reg_scale'}
    with pytest.raises(KeyError, match='decoder.unknown_head'):
        map_key('decoder.unknown_head.weight')
    assert len(KEY_MAP) == len({src for src, _ in KEY_MAP})


def test_converted_file_loads_strictly_with_init_detector(
        converted_n, official_n, parity_dir):
    from mmdet.apis import init_detector
    info, dst = converted_n
    assert info['variant'] == 'n' and info['num_classes'] == 80
    ckpt = torch.load(dst, map_location='cpu', weights_only=False)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['dfine_variant'] == 'n'
    assert len(ckpt['meta']['dataset_meta']['classes']) == 80
    model = init_detector(config_path('n'), dst, device='cpu')
    # strict: every model entry comes from the file and vice versa
    model.load_state_dict(ckpt['state_dict'], strict=True)
    state = model.state_dict()
    assert set(state) == set(ckpt['state_dict'])
    fx, sd = official_n
    assert torch.equal(state['bbox_head.cls_branches.2.weight'],
                       sd['decoder.dec_score_head.2.weight'])
    assert state['decoder.reg_scale'].dtype == torch.int64
    assert state['decoder.reg_scale'].item() == 4
    # the loaded model reproduces the official detections of image 0
    samples = data_samples_for(fx['post/orig_sizes_wh'][:1])
    with torch.no_grad():
        pred = model(parity_inputs(parity_dir)[:1], samples, mode='predict')
    np.testing.assert_allclose(
        pred[0].pred_instances.scores.numpy(),
        fx['post/scores'][0],
        atol=1e-5,
        rtol=0)


def test_cli_prints_variant(official_n, tmp_path, capsys):
    _, sd = official_n
    src, dst = str(tmp_path / 'n.pth'), str(tmp_path / 'n_mmdet.pth')
    torch.save({'model': sd}, src)
    assert tool.main([src, dst]) == 0
    out = capsys.readouterr().out
    assert 'D-FINE-N' in out and '80 classes' in out
    assert osp.isfile(dst)


def test_mismatched_config_is_refused(official_n, tmp_path, capsys):
    _, sd = official_n
    src, dst = str(tmp_path / 'n.pth'), str(tmp_path / 'wrong.pth')
    torch.save({'model': sd}, src)
    with pytest.raises(CheckpointMismatchError) as err:
        tool.convert(src, dst, config=config_path('s'), verbose=False)
    msg = str(err.value)
    # the N decoder is 128 wide, S is 256: keys named with both shapes
    assert 'shape mismatch' in msg
    assert 'decoder.layers.0.self_attn.in_proj_weight: checkpoint (384, 128)' \
        ' vs model (768, 256)' in msg
    assert 'missing from the checkpoint' in msg  # S has a third level
    assert not osp.exists(dst)
    assert tool.main([src, dst, '--config', config_path('s')]) == 1
    assert 'does not match' in capsys.readouterr().err


def test_ema_module_is_preferred(official_n):
    _, sd = official_n
    ema = {k: (v + 1 if v.is_floating_point() else v) for k, v in sd.items()}
    ckpt = {
        'model': sd,
        'ema': {
            'module': ema,
            'updates': 10
        },
        'last_epoch': 3
    }
    picked, source = extract_state_dict(ckpt)
    assert source == 'ema.module'
    assert torch.equal(picked['decoder.enc_score_head.bias'],
                       ema['decoder.enc_score_head.bias'])
    picked, source = extract_state_dict({'model': sd})
    assert source == 'model' and picked['decoder.up'] is sd['decoder.up']
    with pytest.raises(KeyError, match='no official D-FINE weights'):
        extract_state_dict({'optimizer': {}})


def test_obj365_checkpoint_is_detected(official_n, tmp_path):
    """366-class heads (Objects365) -> detected and verified against the
    objects365 config."""
    _, sd = official_n
    obj = {}
    for k, v in sd.items():
        if v.dim() >= 1 and v.shape[0] == 80 and ('score_head' in k):
            v = torch.randn((366, ) + tuple(v.shape[1:]))
        if k == 'decoder.denoising_class_embed.weight':
            v = torch.randn(367, v.shape[1])
        obj[k] = v
    info = detect_variant(obj)
    assert info['variant'] == 'n' and info['num_classes'] == 366
    src, dst = str(tmp_path / 'n365.pth'), str(tmp_path / 'n365_mmdet.pth')
    torch.save({'model': obj}, src)
    info = tool.convert(src, dst, verbose=False)
    assert default_config(info).endswith(
        osp.join('objects365', 'dfine_hgnetv2_n_obj365.py'))
    meta = torch.load(dst, weights_only=False)['meta']
    assert meta['num_classes'] == 366
    assert len(meta['dataset_meta']['classes']) == 366


def test_duplicated_parameters_must_agree(official_n):
    _, sd = official_n
    bad = dict(sd)
    bad['decoder.decoder.up'] = torch.tensor([0.25])
    with pytest.raises(CheckpointMismatchError, match='decoder.decoder.up'):
        convert_state_dict(bad)
    bad = dict(sd)
    bad['decoder.reg_scale'] = torch.tensor([8])
    with pytest.raises(CheckpointMismatchError, match='decoder.reg_scale'):
        convert_state_dict(bad)
    merged = convert_state_dict(sd)
    assert 'decoder.decoder.up' not in merged
    assert merged['decoder.reg_scale'].dtype == torch.int64


def test_variant_signatures(parity_dir):
    """Each COCO variant is recognised from shapes alone (X: reg_scale 8)."""
    from official_random_weights import load_keys_spec
    for v in 'nsmlx':
        spec = load_keys_spec(
            osp.join(parity_dir, f'dfine_{v}_coco_keys.json'))
        fx = np.load(osp.join(parity_dir, f'dfine_{v}_coco.npz'))
        sd = {k: torch.empty(shape) for k, shape, _ in spec}
        sd['decoder.reg_scale'] = torch.from_numpy(
            fx['buffer/decoder.reg_scale'])
        info = detect_variant(sd)
        assert info['variant'] == v
        assert info['num_classes'] == 80
        assert info['reg_scale'] == (8.0 if v == 'x' else 4.0)


def test_demo_draws_detections(converted_n, tmp_path, capsys):
    """tools/demo.py on a converted checkpoint writes the drawn image."""
    from PIL import Image
    img = tmp_path / 'img.jpg'
    Image.new('RGB', (200, 150), (90, 120, 150)).save(img)
    spec = importlib.util.spec_from_file_location(
        'dfine_demo', osp.join(ROOT, 'tools', 'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out = tmp_path / 'out.jpg'
    _, ckpt = converted_n
    assert demo.main([
        str(img),
        config_path('n'), ckpt, '--out-file',
        str(out), '--score-thr', '0.5'
    ]) == 0
    assert Image.open(out).size == (200, 150)
    assert 'of 300' in capsys.readouterr().out
