#!/usr/bin/env python
"""Generate the DEIM parity fixtures in ``tests/data/deim/`` by running DEIM's
own code.

DEIM (ShihuaHuang95/DEIM, commit a9aa4adce6b5, Apache-2.0) is imported from a
checkout given with ``--deim-root`` (made with
``git --git-dir=<mirror> archive a9aa4adce6b5 | tar -x -C DIR``) without
executing its ``engine/__init__.py``: only the model / criterion modules are
loaded.  DEIM's ``engine/misc/dist_utils.py`` imports its whole data package,
so the two functions the criterion takes from it are given here for a single
process (``get_world_size() == 1``, not distributed).  A tiny
``torchvision.ops`` stand-in is installed when the local torchvision cannot be
imported (see ``../shared/tools/README.md``).  Requirements: torch, numpy,
pyyaml, scipy.

Sub-commands:

  mal                  ``deim_mal_cases.pt``: DEIM's
                       ``DEIMCriterion.loss_labels_mal`` on fixed inputs
                       (values and d loss / d logits) for three settings
  criterion            ``deim_criterion_<case>.pt``: the whole
                       ``DEIMCriterion`` with the DEIM-D-FINE loss config on
                       the D-FINE loss fixtures of ``--parity-dir`` (inputs
                       are not copied: only the resulting terms are stored)
  forward --variant v  ``deim_{v}_coco.npz`` + ``deim_{v}_coco_keys.json.gz``:
                       eval-mode forward of DEIM's D-FINE model
                       (``configs/deim_dfine/deim_hgnetv2_{v}_coco.yml``) on
                       random weights made by
                       ``--parity-dir``/official_random_weights.py
  all                  everything above (each variant in a subprocess)

Random weights are never stored: the tests regenerate them from the recorded
seed and gain with ``official_random_weights.py`` (the same helper as the
D-FINE parity fixtures).  The forward input is image 0 of
``--parity-dir``/parity_input.npz.
"""
import argparse
import copy
import gzip
import hashlib
import importlib
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import types

import numpy as np
import torch

COMMIT = 'a9aa4adce6b5'
VARIANTS = ('n', 's', 'm', 'l', 'x')
NUM_THREADS = 1
# first seeds tried per variant (the forward command moves on when a
# query-selection tie check fails)
WEIGHTS = {
    'n': dict(gain=1.2, seed=16010),
    's': dict(gain=1.25, seed=16020),
    'm': dict(gain=1.2, seed=16030),
    'l': dict(gain=1.15, seed=16040),
    'x': dict(gain=1.15, seed=16050),
}
MIN_GAP_300_301 = 1e-4
MIN_CONSECUTIVE_GAP = 5e-6
# fixed buffers identical to the D-FINE parity fixture of the same size
# (checked when generating)
SHARED_FIXED = ('decoder.anchors', 'decoder.valid_mask')
DEFAULT_OUT = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'tests', 'data', 'deim')


# ------------------------------------------------------------------------------------------------
# DEIM code loading
# ------------------------------------------------------------------------------------------------
def _ensure_torchvision_ops():
    try:
        import torchvision.ops  # noqa: F401
        return
    except Exception:
        for k in list(sys.modules):
            if k.startswith('torchvision'):
                del sys.modules[k]
    tv = types.ModuleType('torchvision')
    ops = types.ModuleType('torchvision.ops')
    boxes = types.ModuleType('torchvision.ops.boxes')

    def box_area(b):
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    boxes.box_area = box_area
    ops.boxes = boxes
    tv.ops = ops
    sys.modules.update({
        'torchvision': tv,
        'torchvision.ops': ops,
        'torchvision.ops.boxes': boxes
    })


def _pkg(name, path):
    m = types.ModuleType(name)
    m.__path__ = [path]
    sys.modules[name] = m
    return m


def load_deim(root):
    """DEIM's modules (namespace) imported from the checkout ``root``."""
    if not osp.isfile(osp.join(root, 'engine', 'deim', 'deim_criterion.py')):
        raise SystemExit(
            f'{root}: not a DEIM checkout (engine/deim/deim_criterion.py '
            'missing)')
    _ensure_torchvision_ops()
    for n, p in [('engine', ''), ('engine.core', 'core'),
                 ('engine.deim', 'deim'), ('engine.backbone', 'backbone'),
                 ('engine.misc', 'misc')]:
        _pkg(n, osp.join(root, 'engine', p).rstrip('/'))
    ws = importlib.import_module('engine.core.workspace')
    sys.modules['engine.core'].register = ws.register
    sys.modules['engine.core'].GLOBAL_CONFIG = ws.GLOBAL_CONFIG
    dist = types.ModuleType('engine.misc.dist_utils')
    dist.get_world_size = lambda: 1
    dist.is_dist_available_and_initialized = lambda: False
    sys.modules['engine.misc.dist_utils'] = dist
    importlib.import_module('engine.backbone.common')
    M = types.SimpleNamespace()
    M.hg = importlib.import_module('engine.backbone.hgnetv2')
    M.enc = importlib.import_module('engine.deim.hybrid_encoder')
    M.dec = importlib.import_module('engine.deim.dfine_decoder')
    M.deim = importlib.import_module('engine.deim.deim')
    M.crit = importlib.import_module('engine.deim.deim_criterion')
    M.matcher = importlib.import_module('engine.deim.matcher')
    M.box_ops = importlib.import_module('engine.deim.box_ops')
    return M


def load_cfg(root, variant):
    """DEIM's resolved yml config
    ``configs/deim_dfine/deim_hgnetv2_{variant}_coco.yml``."""
    path = osp.join(root, 'configs', 'deim_dfine',
                    f'deim_hgnetv2_{variant}_coco.yml')
    yu = osp.join(root, 'engine', 'core', 'yaml_utils.py')
    src = open(
        yu, encoding='utf-8').read().replace(
            'from .workspace import GLOBAL_CONFIG', 'GLOBAL_CONFIG = {}')
    mod = types.ModuleType('_deim_yaml_utils')
    exec(compile(src, yu, 'exec'), mod.__dict__)
    return mod.load_config(
        path, cfg=dict())  # fresh dict: the default argument is shared


def build_model(M, cfg):
    nc = cfg['num_classes']
    ess = cfg.get('eval_spatial_size')
    hgk = dict(cfg['HGNetv2'])
    hgk['pretrained'] = False
    hgk.pop('local_model_dir', None)
    bb = M.hg.HGNetv2(**hgk)
    enc = M.enc.HybridEncoder(**cfg['HybridEncoder'], eval_spatial_size=ess)
    dec = M.dec.DFINETransformer(
        **cfg['DFINETransformer'], num_classes=nc, eval_spatial_size=ess)
    return M.deim.DEIM(bb, enc, dec)


def build_criterion(M, cfg):
    c = copy.deepcopy(cfg['DEIMCriterion'])
    mcfg = c.pop('matcher')
    mcfg.pop('type')
    matcher = M.matcher.HungarianMatcher(
        **mcfg, use_focal_loss=cfg.get('use_focal_loss', True))
    return M.crit.DEIMCriterion(matcher, **c, num_classes=cfg['num_classes'])


def _orw(parity_dir):
    """``official_random_weights.py`` of the D-FINE parity fixtures, loaded
    from its file (no ``sys.path`` edit)."""
    path = osp.join(parity_dir, 'official_random_weights.py')
    spec = importlib.util.spec_from_file_location('official_random_weights',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------
# MAL cases
# ------------------------------------------------------------------------------------------------
MAL_CASES = [
    # name, batch gt counts, queries, classes, gamma, mal_alpha, seed
    ('deim_default', (3, 5), 100, 80, 1.5, None, 11),
    ('alpha_0.75_gamma_2', (4, 2), 50, 20, 2.0, 0.75, 12),
    ('empty_image', (6, 0), 50, 20, 1.5, None, 13),
]


def _rand_boxes(g, n, lo=0.05, hi=0.5):
    c = lo + (1 - 2 * lo) * torch.rand(n, 2, generator=g)
    wh = lo + (hi - lo) * torch.rand(n, 2, generator=g)
    return torch.cat([c, wh], -1)


def cmd_mal(a):
    torch.set_num_threads(NUM_THREADS)
    M = load_deim(a.deim_root)
    cases = []
    for name, counts, Q, C, gamma, mal_alpha, seed in MAL_CASES:
        g = torch.Generator().manual_seed(seed)
        B = len(counts)
        logits = -3.0 + 2.0 * torch.randn(B, Q, C, generator=g)
        boxes = _rand_boxes(g, B * Q).reshape(B, Q, 4)
        targets, indices = [], []
        for b, n in enumerate(counts):
            t = {
                'labels': torch.randint(0, C, (n, ), generator=g),
                'boxes': _rand_boxes(g, n)
            }
            q = torch.randperm(Q, generator=g)[:n]
            gt = torch.randperm(n, generator=g)
            # matched predictions near their GT: IoUs spread over (0, 1), one
            # disjoint pair
            jitter = 0.12 * torch.rand(
                n, 1, generator=g) * torch.randn(
                    n, 4, generator=g)
            boxes[b, q] = (t['boxes'][gt] * (1 + jitter)).clamp(0.01, 0.99)
            if n:
                boxes[b, q[0]] = (
                    torch.tensor([0.02, 0.02, 0.01, 0.01]) if t['boxes'][gt[0],
                                                                         0]
                    > 0.2 else torch.tensor([0.98, 0.98, 0.01, 0.01]))
                logits[b, q, t['labels'][gt]] += 3.0
            targets.append(t)
            indices.append((q, gt))
        crit = M.crit.DEIMCriterion(
            matcher=None,
            weight_dict={'loss_mal': 1},
            losses=['mal'],
            gamma=gamma,
            num_classes=C,
            mal_alpha=mal_alpha)
        num_boxes = float(max(sum(counts), 1))
        leaf = logits.clone().requires_grad_(True)
        out = crit.loss_labels_mal({
            'pred_logits': leaf,
            'pred_boxes': boxes
        }, targets, indices, num_boxes)
        loss = out['loss_mal']
        loss.backward()
        # the IoUs DEIM computed inside (values=None path), for the pure-loss
        # test
        idx = crit._get_src_permutation_idx(indices)
        tb = torch.cat([t['boxes'][j] for t, (_, j) in zip(targets, indices)])
        ious = torch.diag(
            M.box_ops.box_iou(
                M.box_ops.box_cxcywh_to_xyxy(boxes[idx]),
                M.box_ops.box_cxcywh_to_xyxy(tb))[0])
        # re-run: the same value bit for bit
        again = crit.loss_labels_mal(
            {
                'pred_logits': logits.clone(),
                'pred_boxes': boxes
            }, targets, indices, num_boxes)['loss_mal']
        assert torch.equal(again, loss.detach())
        cases.append({
            'name': name,
            'gamma': gamma,
            'mal_alpha': mal_alpha,
            'num_boxes': num_boxes,
            'pred_logits': logits,
            'pred_boxes': boxes,
            'targets': targets,
            'indices': indices,
            'ious': ious,
            'loss_mal': loss.detach().clone(),
            'grad_pred_logits': leaf.grad.detach().clone(),
        })
        print(
            json.dumps({
                'case': name,
                'loss_mal': loss.item(),
                'ious': [round(float(v), 4) for v in ious]
            }))
    rec = {
        'meta': {
            'deim_commit':
            COMMIT,
            'function':
            'engine/deim/deim_criterion.py '
            'DEIMCriterion.loss_labels_mal '
            '(values=None: IoU computed by DEIM)',
            'generator':
            'tools/make_deim_fixtures.py mal',
            'torch':
            str(torch.__version__)
        },
        'cases': cases
    }
    path = osp.join(a.out, 'deim_mal_cases.pt')
    torch.save(rec, path)
    print(f'wrote {path} ({osp.getsize(path)} bytes)')


# ------------------------------------------------------------------------------------------------
# whole criterion on the D-FINE loss fixtures
# ------------------------------------------------------------------------------------------------
CRITERION_CASES = {
    # our name: (D-FINE loss fixture in --parity-dir, DEIM config whose
    # DEIMCriterion is used)
    'deim_s_criterion_case1.pt': ('dfine_s_loss_case1.pt', 's'),
    'deim_s_criterion_case2.pt': ('dfine_s_loss_case2.pt', 's'),
    'deim_s_criterion_case3.pt': ('dfine_s_loss_case3.pt', 's'),
    'deim_x_criterion_case2.pt': ('dfine_x_loss_case2.pt', 'x'),
}


def cmd_criterion(a):
    torch.set_num_threads(NUM_THREADS)
    M = load_deim(a.deim_root)
    for name, (src, variant) in CRITERION_CASES.items():
        cfg = load_cfg(a.deim_root, variant)
        crit = build_criterion(M, cfg)
        fx = torch.load(osp.join(a.parity_dir, src), weights_only=True)
        with torch.no_grad():
            losses = crit(
                copy.deepcopy(fx['outputs']), copy.deepcopy(fx['targets']))
            again = crit(
                copy.deepcopy(fx['outputs']), copy.deepcopy(fx['targets']))
        assert list(losses) == list(again) and all(
            torch.equal(losses[k], again[k]) for k in losses)
        c = cfg['DEIMCriterion']
        rec = {
            'meta': {
                'deim_commit':
                COMMIT,
                'inputs':
                f'--parity-dir/{src} (outputs, targets)',
                'config':
                f'configs/deim_dfine/deim_hgnetv2_{variant}_coco.yml',
                'criterion_config':
                json.loads(json.dumps({
                    k: v
                    for k, v in c.items()
                })),
                'world_size':
                1,
                'generator':
                'tools/make_deim_fixtures.py criterion'
            },
            'losses': {
                k: v.detach().clone()
                for k, v in losses.items()
            },
        }
        path = osp.join(a.out, name)
        torch.save(rec, path)
        print(
            json.dumps({
                'case': name,
                'terms': len(losses),
                'loss_mal': float(losses['loss_mal']),
                'bytes': osp.getsize(path)
            }))


# ------------------------------------------------------------------------------------------------
# eval-mode forward of DEIM's D-FINE models
# ------------------------------------------------------------------------------------------------
def _check_topk(enc_logits, valid_mask, k=300):
    score = enc_logits.max(-1).values
    vm = valid_mask.reshape(-1)
    res = []
    for b in range(score.shape[0]):
        s, idx = score[b].topk(k + 1)
        res.append(
            dict(
                invalid_selected=int((~vm[idx[:k]]).sum()),
                gap_k_kplus1=float(s[k - 1] - s[k]),
                min_consecutive_gap=float((s[:k] - s[1:k + 1]).min())))
    ok = all(r['invalid_selected'] == 0 and r['gap_k_kplus1'] > MIN_GAP_300_301
             and r['min_consecutive_gap'] >= MIN_CONSECUTIVE_GAP for r in res)
    return ok, res


def _sha(t):
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def cmd_forward(a):
    torch.set_num_threads(NUM_THREADS)
    v = a.variant
    orw = _orw(a.parity_dir)
    M = load_deim(a.deim_root)
    cfg = load_cfg(a.deim_root, v)
    model = build_model(M, cfg).eval()
    sd0 = model.state_dict()
    spec = [(k, tuple(t.shape), str(t.dtype).replace('torch.', ''))
            for k, t in sd0.items()]
    fixed = {k: t.clone() for k, t in sd0.items() if orw.is_fixed_key(k)}
    dfx = np.load(osp.join(a.parity_dir, f'dfine_{v}_coco.npz'))
    # Same architecture and input size as D-FINE: the anchors are the D-FINE
    # fixture's buffers.  They are taken from there (torch.log may differ by
    # 1 ulp between CPUs, and a checkpoint carries its own).
    anchor_diff = {}
    for k in SHARED_FIXED:
        ref = torch.from_numpy(dfx['buffer/' + k])
        own = fixed[k]
        if k == 'decoder.valid_mask':
            assert torch.equal(own, ref), k
        else:
            finite = torch.isfinite(ref)
            assert torch.equal(finite, torch.isfinite(own)), k
            anchor_diff[k] = float((own[finite] - ref[finite]).abs().max())
            assert anchor_diff[k] <= 1e-6, (k, anchor_diff[k])
        fixed[k] = ref.clone()
    x = torch.from_numpy(
        np.load(
            osp.join(a.parity_dir,
                     'parity_input.npz'))['images_uint8'][:1]).float() / 255
    rec = {}
    model.decoder.enc_score_head.register_forward_hook(
        lambda m, i, o: rec.__setitem__('enc_logits', o))
    seed, gain = WEIGHTS[v]['seed'], WEIGHTS[v]['gain']
    for attempt in range(40):
        sd = orw.make_state_dict(spec, seed + attempt, fixed, gain=gain)
        model.load_state_dict(sd, strict=True)
        with torch.no_grad():
            out = model(x)
        ok, tie = _check_topk(rec['enc_logits'], fixed['decoder.valid_mask'])
        if ok:
            break
    else:
        raise SystemExit(f'{v}: no seed passes the query-selection tie check')
    seed = seed + attempt
    with torch.no_grad():
        out2 = model(x)
    assert torch.equal(out['pred_logits'], out2['pred_logits'])
    enc_logits = rec['enc_logits']
    top_score, topk_ind = torch.topk(enc_logits.max(-1).values, 301, dim=-1)
    sd_hash = hashlib.sha256(b''.join(t.numpy().tobytes()
                                      for t in sd.values())).hexdigest()[:16]
    meta = {
        'variant': v,
        'config': f'configs/deim_dfine/deim_hgnetv2_{v}_coco.yml',
        'deim_commit': COMMIT,
        'weights': {
            'helper': 'official_random_weights.py (../shared/parity)',
            'seed': seed,
            'gain': gain,
            'state_dict_sha256_16': sd_hash
        },
        'input': 'image 0 of ../shared/parity/parity_input.npz, float32 / 255',
        'mode': 'model.eval(), torch.no_grad(), no deploy()',
        'shared_fixed_buffers': {
            k: {
                'from': f'dfine_{v}_coco.npz',
                'sha256_16': _sha(fixed[k])
            }
            for k in SHARED_FIXED
        },
        'own_anchors_vs_shared_max_abs_diff': anchor_diff,
        'activation': cfg['DFINETransformer'].get('activation'),
        'mlp_act': cfg['DFINETransformer'].get('mlp_act'),
        'query_selection_tie_check': tie,
        'generated_with': {
            'torch': str(torch.__version__),
            'threads': NUM_THREADS
        },
    }
    z = {
        'meta/json': np.array(json.dumps(meta)),
        'meta/weight_seed': np.array(seed, dtype=np.int64),
        'meta/weight_gain': np.array(gain, dtype=np.float64)
    }
    for k, t in fixed.items():
        if k not in SHARED_FIXED:
            z['buffer/' + k] = t.numpy()
    z['out/pred_logits'] = out['pred_logits'].numpy()
    z['out/pred_boxes'] = out['pred_boxes'].numpy()
    z['full/enc_topk_index'] = topk_ind[:, :300].numpy()
    z['full/enc_topk_score'] = top_score.numpy()
    path = osp.join(a.out, f'deim_{v}_coco.npz')
    np.savez_compressed(path, **z)
    with gzip.open(
            osp.join(a.out, f'deim_{v}_coco_keys.json.gz'), 'wt',
            encoding='utf-8') as f:
        json.dump(
            {
                'variant': v,
                'deim_commit': COMMIT,
                'keys': [[k, list(s), d] for k, s, d in spec]
            },
            f,
            separators=(',', ':'))
    print(
        json.dumps({
            'variant': v,
            'seed': seed,
            'entries': len(spec),
            'bytes': osp.getsize(path),
            'min_gap_300_301': min(t['gap_k_kplus1'] for t in tie)
        }))


def cmd_all(a):
    base = [
        sys.executable,
        osp.abspath(__file__), '--deim-root', a.deim_root, '--parity-dir',
        a.parity_dir, '--out', a.out
    ]
    subprocess.run(base + ['mal'], check=True)
    subprocess.run(base + ['criterion'], check=True)
    for v in VARIANTS:
        subprocess.run(base + ['forward', '--variant', v], check=True)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        '--deim-root',
        required=True,
        help=f'checkout of ShihuaHuang95/DEIM at {COMMIT}')
    help_text = (
        'D-FINE parity folder (official_random_weights.py, parity_input.npz, '
        'loss fixtures)')
    p.add_argument(
        '--parity-dir',
        default=os.environ.get('DFINE_PARITY_DIR', '../shared/parity'),
        help=help_text)
    p.add_argument('--out', default=DEFAULT_OUT)
    sp = p.add_subparsers(dest='cmd', required=True)
    sp.add_parser('mal')
    sp.add_parser('criterion')
    q = sp.add_parser('forward')
    q.add_argument('--variant', choices=VARIANTS, required=True)
    sp.add_parser('all')
    a = p.parse_args(argv)
    a.deim_root = osp.abspath(a.deim_root)
    a.parity_dir = osp.abspath(a.parity_dir)
    os.makedirs(a.out, exist_ok=True)
    {
        'mal': cmd_mal,
        'criterion': cmd_criterion,
        'forward': cmd_forward,
        'all': cmd_all
    }[a.cmd](
        a)


if __name__ == '__main__':
    main()
