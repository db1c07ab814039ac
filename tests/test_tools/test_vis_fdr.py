"""tools/analysis/vis_fdr.py: per-layer FDR edge distributions drawn to a
PNG."""
import importlib.util
import os.path as osp
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load():
    spec = importlib.util.spec_from_file_location(
        'dfine_vis_fdr', osp.join(ROOT, 'tools', 'analysis', 'vis_fdr.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _random_checkpoint(cfg_path, path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import dfine_mmdet  # noqa: F401
    register_all_modules(init_default_scope=True)
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(cfg_path).model)
    # the corner heads' last layers start at zero (uniform distributions);
    # random values make every layer's distributions differ
    with torch.no_grad():
        for p in model.bbox_head.reg_branches.parameters():
            p.normal_(0, 0.2)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return model


def test_distributions_per_layer_and_png(tiny_config, toy_coco, tmp_path, cli):
    """README: ``python tools/analysis/vis_fdr.py IMG CFG CKPT --out fdr.png``
    (the tiny toy D-FINE-N with random weights saved here, a toy image)."""
    import glob

    from mmdet.apis import init_detector
    ckpt = str(tmp_path / 'random.pth')
    built = _random_checkpoint(tiny_config, ckpt)
    img = sorted(
        glob.glob(osp.join(toy_coco, '**', '*.jpg'), recursive=True) +
        glob.glob(osp.join(toy_coco, '**', '*.png'), recursive=True))[0]

    vis = _load()
    model = init_detector(tiny_config, ckpt, device='cpu')
    out = vis.fdr_distributions(model, img)
    layers = model.decoder.eval_idx + 1
    reg_max = model.bbox_head.bbox_coder.reg_max
    num_queries = built.num_queries  # 10 in the tiny config
    assert num_queries == 10
    assert out['probs'].shape == (layers, num_queries, 4, reg_max + 1)
    torch.testing.assert_close(out['probs'].sum(-1),
                               torch.ones(layers, num_queries, 4))
    # each layer refines (residual corners): distributions change across layers
    assert not torch.allclose(out['probs'][0], out['probs'][-1])
    assert out['project'].shape == (reg_max + 1, )
    # W(n) is monotone non-decreasing (Eq. 4)
    assert bool((out['project'][1:] >= out['project'][:-1]).all())
    # the last layer's boxes match the detections the model returned
    inst = out['result'].pred_instances
    assert len(inst) > 0
    import mmcv
    h, w = mmcv.imread(img).shape[:2]
    q = vis.match_queries(inst.bboxes[:1].float(), out['boxes'][-1], (h, w))
    cx, cy, bw, bh = out['boxes'][-1][q[0]].tolist()
    expect = torch.tensor([(cx - bw / 2) * w, (cy - bh / 2) * h,
                           (cx + bw / 2) * w, (cy + bh / 2) * h])
    torch.testing.assert_close(
        inst.bboxes[0].float(), expect, atol=0.05 * max(h, w), rtol=0)

    png = tmp_path / 'fdr.png'
    log = cli([
        sys.executable, 'tools/analysis/vis_fdr.py', img, tiny_config, ckpt,
        '--out',
        str(png), '--topk', '2', '--score-thr', '0'
    ],
              cwd=ROOT,
              timeout=600)
    assert f'2 detection(s), {layers} decoder layers' in log, log
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert png.stat().st_size > 10_000  # a drawn figure, not an empty canvas
