"""Checkpoint faults: another variant, another class count, an unconverted
official file, a truncated file, a non-D-FINE file (docs/reliability.md)."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
N_CFG = osp.join(ROOT, 'configs/dfine/dfine_hgnetv2_n_coco.py')
S_CFG = osp.join(ROOT, 'configs/dfine/dfine_hgnetv2_s_coco.py')


def _build(cfg_path, **model_overrides):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.init_cfg = None
    cfg.model.update(model_overrides)
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def n_ckpt(tmp_path_factory):
    """An mmdet-format D-FINE-N checkpoint (random weights)."""
    model = _build(N_CFG)
    path = str(tmp_path_factory.mktemp('ckpt') / 'dfine_n.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def _init_detector(cfg_path, ckpt, **model_overrides):
    from mmdet.apis import init_detector
    from mmengine.config import Config
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.init_cfg = None
    cfg.model.update(model_overrides)
    return init_detector(cfg, ckpt, device='cpu')


def test_checkpoint_of_another_variant_is_one_clear_error(n_ckpt):
    from dfine_mmdet.checkpoint import CheckpointMismatchError
    with pytest.raises(CheckpointMismatchError) as info:
        _init_detector(S_CFG, n_ckpt)
    msg = str(info.value)
    assert 'looks like D-FINE-N (HGNetV2-B0, embed_dims=128' in msg, msg
    assert 'the config builds D-FINE-S (HGNetV2-B0, embed_dims=256' in msg
    assert 'allow_partial_checkpoint' in msg


def test_matching_checkpoint_loads_every_weight(n_ckpt):
    model = _init_detector(N_CFG, n_ckpt)
    saved = torch.load(n_ckpt, map_location='cpu')['state_dict']
    state = model.state_dict()
    assert set(state) == set(saved)
    for k, v in saved.items():
        assert torch.equal(state[k], v), k


def test_partial_load_opt_out(n_ckpt):
    """The explicit opt-out keeps MMEngine's permissive loading: keys whose
    shapes fit are loaded, the rest keep their init."""
    model = _init_detector(S_CFG, n_ckpt, allow_partial_checkpoint=True)
    saved = torch.load(n_ckpt, map_location='cpu')['state_dict']
    key = 'backbone.stem.stem1.conv.weight'  # B0 in both
    assert torch.equal(model.state_dict()[key], saved[key])


def test_other_class_count_names_the_adaptation_hook(n_ckpt):
    from mmengine.config import Config

    from dfine_mmdet.checkpoint import CheckpointMismatchError
    cfg = Config.fromfile(N_CFG)
    cfg.model.bbox_head.num_classes = 3
    cfg.model.backbone.init_cfg = None
    from mmdet.apis import init_detector
    with pytest.raises(CheckpointMismatchError) as info:
        init_detector(cfg, n_ckpt, device='cpu')
    msg = str(info.value)
    assert 'has 80 classes but the config builds 3' in msg, msg
    assert 'ClassHeadAdaptHook' in msg


def test_other_class_count_with_the_adaptation_hook_loads(n_ckpt):
    """With ClassHeadAdaptHook (what the runner runs in
    ``after_load_checkpoint``), the adapted checkpoint passes the guard and
    every class-independent weight is the checkpoint's."""
    from dfine_mmdet.engine.hooks.class_head_adapt_hook import \
        ClassHeadAdaptHook
    model = _build(N_CFG, bbox_head=dict(num_classes=3))
    ckpt = torch.load(n_ckpt, map_location='cpu')['state_dict']
    report = ClassHeadAdaptHook().adapt(ckpt, model.state_dict())
    assert report['reinitialised']
    model.load_state_dict(ckpt, strict=False)
    key = 'decoder.layers.0.cross_attn.value_proj.weight'
    if key not in ckpt:
        key = next(k for k in ckpt if k.startswith('decoder.layers.0.'))
    assert torch.equal(model.state_dict()[key], ckpt[key])


def test_unconverted_official_checkpoint(parity_dir, tmp_path):
    """An official D-FINE-N file (keys/shapes of the official model, from
    shared/docs/official_state_dict_keys.txt) given to init_detector."""
    from dfine_mmdet.checkpoint import CheckpointMismatchError
    keys_file = osp.join(
        osp.dirname(parity_dir), 'docs', 'official_state_dict_keys.txt')
    state, section = {}, None
    with open(keys_file) as f:
        for line in f:
            if line.startswith('#####'):
                section = line.split(':')[0].strip('# ').strip()
                continue
            if section != 'D-FINE-N (COCO, 80 classes)' or not line.strip():
                continue
            name, shape, _ = line.rstrip('\n').split('\t')
            state[name] = torch.zeros(eval(shape), dtype=torch.float32)
    assert len(state) > 600
    # a bare official state dict, and the official training-file layout
    bare = str(tmp_path / 'dfine_n_bare.pth')
    torch.save(state, bare)
    with pytest.raises(
            CheckpointMismatchError,
            match='unconverted official D-FINE checkpoint.*'
            'tools/convert_official_ckpt.py'):
        _init_detector(N_CFG, bare)
    nested = str(tmp_path / 'dfine_n_coco.pth')
    torch.save({'model': state}, nested)
    with pytest.raises(
            CheckpointMismatchError,
            match=r"nested dicts under \['model'\].*"
            'tools/convert_official_ckpt.py'):
        _init_detector(N_CFG, nested)


def _convert(src, tmp_path):
    proc = subprocess.run([
        sys.executable, 'tools/convert_official_ckpt.py', src,
        str(tmp_path / 'out.pth')
    ],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]
    return proc.returncode, errors, proc.stderr


def test_converter_on_a_non_dfine_state_dict(tmp_path):
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    src = str(tmp_path / 'resnet_like.pth')
    torch.save({'state_dict': net.state_dict()}, src)
    rc, errors, err = _convert(src, tmp_path)
    assert rc == 1, err
    assert len(errors) == 1, err
    assert 'is not an official D-FINE checkpoint' in errors[0]
    assert 'Traceback' not in err
    assert not osp.exists(tmp_path / 'out.pth')


def test_converter_on_truncated_and_missing_files(n_ckpt, tmp_path):
    src = str(tmp_path / 'truncated.pth')
    with open(n_ckpt, 'rb') as f:
        data = f.read()
    with open(src, 'wb') as f:
        f.write(data[:len(data) // 3])
    rc, errors, err = _convert(src, tmp_path)
    assert rc == 1 and len(errors) == 1, err
    assert 'cannot read' in errors[0] and 'truncated' in errors[0]
    rc, errors, err = _convert(str(tmp_path / 'missing.pth'), tmp_path)
    assert rc == 1 and errors == [
        f'error: {tmp_path / "missing.pth"}: no such file'
    ], err


@pytest.mark.parametrize('layout', ['ema_only', 'model_only'])
def test_converter_on_ema_only_and_model_only_files(parity_dir, tmp_path,
                                                    layout):
    """An official file holding only ``ema`` or only ``model`` converts with
    the CLI, and the result loads into the N config with every key."""
    sys.path.insert(0, osp.join(ROOT, 'tests', 'test_models'))
    from dfine_model_utils import official_random_state_dict
    _, sd = official_random_state_dict(parity_dir, 'n')
    src = str(tmp_path / f'{layout}.pth')
    torch.save({'ema': {
        'module': sd,
        'updates': 5
    }} if layout == 'ema_only' else {'model': sd}, src)
    rc, errors, err = _convert(src, tmp_path)
    assert rc == 0 and not errors, err
    model = _init_detector(N_CFG, str(tmp_path / 'out.pth'))
    saved = torch.load(
        str(tmp_path / 'out.pth'), map_location='cpu',
        weights_only=False)['state_dict']
    assert set(model.state_dict()) - set(saved) <= {
        k
        for k in model.state_dict() if k.endswith('num_batches_tracked')
    }
    key = 'backbone.stem.stem1.conv.weight'
    assert torch.equal(model.state_dict()[key], saved[key])
