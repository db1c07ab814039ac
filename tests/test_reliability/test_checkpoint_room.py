"""``dfine_mmdet.checkpoint``: one error class, one variant table, one fit
report for the guard and the converter; ``dfine_mmdet.registration``: what
importing the plugin changes elsewhere, and a quiet import."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _model_shapes(variant):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    from dfine_mmdet.checkpoint import tensor_shapes
    init_default_scope('mmdet')
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'dfine', f'dfine_hgnetv2_{variant}_coco.py'))
    cfg.model.backbone.init_cfg = None
    return tensor_shapes(MODELS.build(cfg.model).state_dict())


@pytest.mark.parametrize('variant', ['n', 'x'])
def test_describe_names_the_size_of_a_built_model(variant):
    """The one variant table names what the size configs build (X included:
    384-d encoder, 256-d decoder)."""
    from dfine_mmdet.checkpoint import describe
    info = describe(_model_shapes(variant))
    assert info['variant'] == variant
    assert info['size'] == f'D-FINE-{variant.upper()}'
    assert info['num_classes'] == 80


def test_official_files_are_described_by_the_same_table(parity_dir):
    """Official tensor shapes of the five sizes (shared/parity key specs),
    read through the key table, give the five letters."""
    from official_random_weights import load_keys_spec

    from dfine_mmdet.checkpoint import detect_variant
    for v in 'nsmlx':
        spec = load_keys_spec(
            osp.join(parity_dir, f'dfine_{v}_coco_keys.json'))
        sd = {
            k: torch.zeros(shape, dtype=getattr(torch,
                                                dtype.split('.')[-1]))
            for k, shape, dtype in spec
        }
        info = detect_variant(sd)
        assert info['variant'] == v, (v, info)
        assert info['num_classes'] == 80


def test_one_error_class_for_guard_and_converter():
    from dfine_mmdet.checkpoint import (CheckpointMismatchError,
                                        check_state_dict, convert_state_dict,
                                        errors, guard, official)
    assert guard.CheckpointMismatchError is errors.CheckpointMismatchError
    assert official.CheckpointMismatchError is errors.CheckpointMismatchError
    with pytest.raises(CheckpointMismatchError, match='does not fit'):
        check_state_dict({'a.weight': (2, 3)}, {'a.weight': (3, 3)})
    with pytest.raises(CheckpointMismatchError, match='decoder.decoder.up'):
        convert_state_dict({
            'decoder.up': torch.tensor([0.5]),
            'decoder.decoder.up': torch.tensor([0.25])
        })


def test_fit_report():
    from dfine_mmdet.checkpoint import state_dict_fit
    fit = state_dict_fit({
        'a': (2, ),
        'b': (3, ),
        'c': (1, )
    }, {
        'a': (2, ),
        'b': (4, ),
        'd': (5, )
    })
    assert fit.mismatched == [('b', (4, ), (3, ))]
    assert fit.missing == ['c'] and fit.unexpected == ['d']
    assert not fit.fits
    text = fit.report()
    assert 'b: checkpoint (4,) vs model (3,)' in text
    assert '1 key(s) missing from the checkpoint, first: c' in text
    assert state_dict_fit({'a': (2, )}, {'a': (2, )}).report() is None


def test_registration_is_listed_and_applied():
    """The replaced MMEngine / MMDeploy entries point to the plugin after
    the import, and the plugin's registry names are listed."""
    from mmengine.runner.checkpoint import CheckpointLoader

    import dfine_mmdet  # noqa: F401
    from dfine_mmdet.checkpoint import load_from_local_checked
    from dfine_mmdet.registration import plugin_registrations
    assert CheckpointLoader._schemes[''] is load_from_local_checked
    names = plugin_registrations()
    assert 'DFINE' in names['MODELS'] and 'DFINEHead' in names['MODELS']
    assert 'WallClockBudgetHook' in names['HOOKS']
    import importlib.util
    if importlib.util.find_spec('onnxruntime') is not None:
        from mmdeploy.backend.base import BACKEND_MANAGERS
        assert BACKEND_MANAGERS.find('onnxruntime').__module__.startswith(
            'dfine_mmdet.')


def test_import_prints_nothing_of_its_own():
    """``python -c "import dfine_mmdet"`` prints only onedl-mmdetection's
    own 'Could not import OneDL' lines (no backend re-registration INFO)."""
    proc = subprocess.run([sys.executable, '-c', 'import dfine_mmdet'],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    lines = [
        ln for ln in (proc.stdout + proc.stderr).splitlines()
        if ln.strip() and not ln.startswith('Could not import OneDL')
    ]
    assert lines == [], lines
