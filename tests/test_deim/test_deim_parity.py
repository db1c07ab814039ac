"""Eval-mode parity of the DEIM-D-FINE configs with DEIM's own model, through
the checkpoint converter.

For each size, ``tests/data/deim/deim_{v}_coco.npz`` (made by
``tools/make_deim_fixtures.py forward`` from DEIM's code at a9aa4adce6b5)
holds DEIM's outputs on image 0 of ``../shared/parity/parity_input.npz`` for
random weights in DEIM's state_dict layout, regenerated here with
``../shared/parity/official_random_weights.py`` from the recorded seed and
gain (keys: ``deim_{v}_coco_keys.json.gz``; the anchors are the D-FINE
fixture's buffers).  The weights are written as a DEIM checkpoint
(``{'model': state_dict}``, as DEIM releases them), converted with
``tools/convert_official_ckpt.py --deim`` and loaded with MMDetection's
``init_detector`` from ``configs/deim_dfine/deim_hgnetv2_{v}_coco.py``.
Tolerances are those of the D-FINE parity tests (../shared/parity/README.md).
"""
import gzip
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATA = osp.join(ROOT, 'tests', 'data', 'deim')
VARIANTS = ['n', 's', 'm', 'l', 'x']
LOGITS_ATOL = 1e-4
BOXES_ATOL = 1e-5
SHARED_FIXED = ('decoder.anchors', 'decoder.valid_mask')


def _samples():
    from mmdet.structures import DetDataSample
    return [
        DetDataSample(
            metainfo=dict(
                img_shape=(640, 640),
                batch_input_shape=(640, 640),
                ori_shape=(640, 640),
                scale_factor=(1.0, 1.0)))
    ]


def _fixture(v):
    path = osp.join(DATA, f'deim_{v}_coco.npz')
    if not osp.isfile(path):
        pytest.skip(f'{path} missing (tools/make_deim_fixtures.py forward)')
    return np.load(path)


def deim_state_dict(parity_dir, v):
    """(fixture, DEIM-layout random state dict) of size ``v``."""
    from official_random_weights import make_state_dict
    fx = _fixture(v)
    with gzip.open(osp.join(DATA, f'deim_{v}_coco_keys.json.gz'), 'rt') as f:
        spec = [(k, tuple(s), d) for k, s, d in json.load(f)['keys']]
    fixed = {
        k[len('buffer/'):]: torch.from_numpy(fx[k])
        for k in fx.files if k.startswith('buffer/')
    }
    dfx = np.load(osp.join(parity_dir, f'dfine_{v}_coco.npz'))
    for k in SHARED_FIXED:
        fixed[k] = torch.from_numpy(dfx['buffer/' + k])
    sd = make_state_dict(
        spec,
        seed=int(fx['meta/weight_seed']),
        fixed=fixed,
        gain=float(fx['meta/weight_gain']))
    return fx, sd


@pytest.mark.parametrize('v', VARIANTS)
def test_converted_deim_checkpoint_matches_deim(parity_dir, v, tmp_path):
    from mmdet.apis import init_detector

    import dfine_mmdet  # noqa: F401
    fx, sd = deim_state_dict(parity_dir, v)
    meta = json.loads(str(fx['meta/json']))
    digest = __import__('hashlib').sha256(b''.join(
        t.numpy().tobytes() for t in sd.values())).hexdigest()[:16]
    assert digest == meta['weights']['state_dict_sha256_16']
    src, dst = tmp_path / f'deim_{v}.pth', tmp_path / f'deim_{v}_mmdet.pth'
    torch.save({'model': sd}, src)
    # the documented converter command (docs/deim.md)
    proc = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'convert_official_ckpt.py'),
        str(src),
        str(dst), '--deim'
    ],
                          capture_output=True,
                          text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert f'deim_hgnetv2_{v}_coco.py' in proc.stdout
    cfg = osp.join(ROOT, 'configs', 'deim_dfine', f'deim_hgnetv2_{v}_coco.py')
    model = init_detector(cfg, str(dst), device='cpu')
    model.eval()
    images = np.load(osp.join(parity_dir, 'parity_input.npz'))['images_uint8']
    x = torch.from_numpy(images[:1]).float() / 255
    samples = _samples()
    with torch.no_grad():
        feats = model.extract_feat(x)
        head_inputs = model.forward_transformer(feats, samples)
        logits, boxes, _ = model.bbox_head(**head_inputs)
    ours_idx = head_inputs['enc_topk_index'][0].numpy()
    ref_idx = fx['full/enc_topk_index'][0]
    assert set(ours_idx.tolist()) == set(ref_idx.tolist())
    pos = {int(t): i for i, t in enumerate(ours_idx)}
    order = np.array([pos[int(t)] for t in ref_idx])
    dl = np.abs(logits[-1][0].numpy()[order] - fx['out/pred_logits'][0]).max()
    db = np.abs(boxes[-1][0].numpy()[order] - fx['out/pred_boxes'][0]).max()
    print(f'DEIM-{v.upper()}: max|dlogits|={dl:.3g} max|dboxes|={db:.3g}')
    assert dl <= LOGITS_ATOL and db <= BOXES_ATOL


def test_relu_model_does_not_match_deim(parity_dir):
    """The fixture tells the SiLU decoder apart: the same weights in the
    D-FINE-N config (ReLU) give other outputs."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    from dfine_mmdet.checkpoint.official import convert_state_dict
    fx, sd = deim_state_dict(parity_dir, 'n')
    init_default_scope('mmdet')
    model = MODELS.build(
        Config.fromfile(
            osp.join(ROOT, 'configs', 'dfine',
                     'dfine_hgnetv2_n_coco.py')).model)
    model.load_state_dict(convert_state_dict(sd), strict=True)
    model.eval()
    images = np.load(osp.join(parity_dir, 'parity_input.npz'))['images_uint8']
    x = torch.from_numpy(images[:1]).float() / 255
    with torch.no_grad():
        head_inputs = model.forward_transformer(
            model.extract_feat(x), _samples())
        _, boxes, _ = model.bbox_head(**head_inputs)
    ref = np.sort(fx['out/pred_boxes'][0].reshape(-1))
    assert np.abs(np.sort(boxes[-1][0].numpy().reshape(-1)) - ref).max() > 1e-3
