"""DINO + FDR and Deformable DETR + FDR through MMDeploy on CPU.

The models are small random variants of the toy configs
(``configs/dino_fdr/toy/dino-4scale_r18_fdr_toy.py``, 32-d;
``configs/deformable_detr_fdr/toy/deformable-detr-refine-twostage_r18_fdr_toy.py``,
256-d), 10 queries, at 128x128, with the noise scheme of
``deploy_fixtures.py`` (N(0, 0.02) on every parameter, N(0, 0.1) on the
parts that make the query-selection scores, so that the top-k boundary is
well posed: checked first).  The same agreement checks as D-FINE's
(``test_dfine_export.py``, ``test_openvino.py``):

* ONNX Runtime static (batch 1) and dynamic-batch graphs exported with
  MMDeploy's ``torch2onnx``; no custom-domain op (mmcv's deformable
  attention exports as ``GridSample``); run through MMDeploy's
  ``End2EndModel`` and a plain ONNX Runtime session against the unmodified
  PyTorch ``test_step``: every detection paired (same label), boxes within
  1e-3 px, scores within 1e-4; the dynamic graph at batch 1 and 2;
* OpenVINO (when installed): static IR through MMDeploy's ``to_backend`` and
  ``End2EndModel``, same tolerances.
"""
import copy
import os.path as osp

import pytest
import torch

pytest.importorskip('mmdeploy')
pytest.importorskip('onnxruntime')

from deploy_fixtures import DEPLOY_DIR, ROOT, images  # noqa: E402
from mmengine.config import Config  # noqa: E402

from dfine_mmdet.deploy.graph_checks import custom_domain_ops  # noqa: E402
from dfine_mmdet.deploy.graph_checks import op_type_counts

BOX_TOL_PX = 1e-3
SCORE_TOL = 1e-4
MIN_SELECTION_GAP = 1e-4
SIZE = 128
NUM_QUERIES = 10
DINO_D = 32

MODELS = {
    'dino_fdr':
    dict(
        config='configs/dino_fdr/toy/dino-4scale_r18_fdr_toy.py',
        options={
            'model.backbone.base_channels': 8,
            'model.neck.in_channels': [16, 32, 64],
            'model.neck.out_channels': DINO_D,
            'model.neck.norm_cfg.num_groups': 8,
            'model.encoder.num_layers': 1,
            'model.encoder.layer_cfg.self_attn_cfg.embed_dims': DINO_D,
            'model.encoder.layer_cfg.self_attn_cfg.num_heads': 4,
            'model.encoder.layer_cfg.ffn_cfg.embed_dims': DINO_D,
            'model.encoder.layer_cfg.ffn_cfg.feedforward_channels': 64,
            'model.decoder.layer_cfg.self_attn_cfg.embed_dims': DINO_D,
            'model.decoder.layer_cfg.self_attn_cfg.num_heads': 4,
            'model.decoder.layer_cfg.cross_attn_cfg.embed_dims': DINO_D,
            'model.decoder.layer_cfg.cross_attn_cfg.num_heads': 4,
            'model.decoder.layer_cfg.ffn_cfg.embed_dims': DINO_D,
            'model.decoder.layer_cfg.ffn_cfg.feedforward_channels': 64,
            'model.positional_encoding.num_feats': DINO_D // 2,
            'model.bbox_head.embed_dims': DINO_D,
            'model.dn_cfg.group_cfg.num_dn_queries': 10,
        },
        # DINO ranks proposals by their best class logit
        rank=lambda logits: logits.max(-1).values),
    'ddetr_fdr':
    dict(
        config='configs/deformable_detr_fdr/toy/'
        'deformable-detr-refine-twostage_r18_fdr_toy.py',
        options={
            'model.backbone.base_channels': 8,
            'model.neck.in_channels': [16, 32, 64],
            'model.encoder.num_layers': 1,
            'model.encoder.layer_cfg.ffn_cfg.feedforward_channels': 64,
            'model.decoder.layer_cfg.ffn_cfg.feedforward_channels': 64,
        },
        # Deformable DETR ranks them by the first (foreground) logit
        rank=lambda logits: logits[..., 0]),
}
# encoder/query-selection parts get the larger noise (see the docstring)
FEATURE_PARAMS = ('backbone.', 'neck.', 'encoder.', 'memory_trans_',
                  'level_embed')


def _model_cfg(name, tmp_path):
    spec = MODELS[name]
    cfg = Config.fromfile(osp.join(ROOT, spec['config']))
    cfg.merge_from_dict(spec['options'])
    cfg.merge_from_dict({
        'model.num_queries': NUM_QUERIES,
        'model.test_cfg.max_per_img': NUM_QUERIES
    })
    path = str(tmp_path / f'{name}.py')
    cfg.dump(path)
    return path


def _checkpoint(model_cfg, path):
    from mmdet.registry import MODELS as REG
    from mmdet.utils import register_all_modules

    import dfine_mmdet  # noqa: F401
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(model_cfg)
    torch.manual_seed(0)
    model = REG.build(cfg.model)
    model.init_weights()
    num_layers = model.decoder.num_layers
    enc_cls = f'bbox_head.cls_branches.{num_layers}.'
    enc_reg = f'bbox_head.reg_branches.{num_layers}.'
    with torch.no_grad():
        for name, p in model.named_parameters():
            big = name.startswith(FEATURE_PARAMS + (enc_cls, enc_reg))
            p.add_(torch.randn_like(p) * (0.1 if big else 0.02))
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def _deploy_cfg(name):
    cfg = Config.fromfile(osp.join(DEPLOY_DIR, name))
    cfg.onnx_config.input_shape = (SIZE, SIZE)
    cfg.codebase_config.post_processing.keep_top_k = NUM_QUERIES
    cfg.codebase_config.post_processing.max_output_boxes_per_class = \
        NUM_QUERIES
    if 'backend_config' in cfg and 'model_inputs' in cfg.backend_config:
        cfg.backend_config.model_inputs = [
            dict(opt_shapes=dict(input=[1, 3, SIZE, SIZE]))
        ]
    return cfg


@pytest.fixture(scope='module', params=list(MODELS))
def model(request, tmp_path_factory):
    """(name, model config path, checkpoint path)."""
    tmp = tmp_path_factory.mktemp(request.param)
    cfg = _model_cfg(request.param, tmp)
    return request.param, cfg, _checkpoint(cfg, str(tmp / 'random.pth'))


def _torch2onnx(deploy_cfg, model, work_dir):
    from mmdeploy.apis import torch2onnx
    _, model_cfg, ckpt = model
    torch2onnx(images()[0], str(work_dir), 'end2end.onnx', deploy_cfg,
               model_cfg, ckpt, 'cpu')
    return str(work_dir / 'end2end.onnx')


@pytest.fixture(scope='module')
def ort_static(model, tmp_path_factory):
    cfg = _deploy_cfg('detection_onnxruntime_static-640x640.py')
    return cfg, _torch2onnx(cfg, model, tmp_path_factory.mktemp('ort_s'))


@pytest.fixture(scope='module')
def ort_dynamic(model, tmp_path_factory):
    cfg = _deploy_cfg('detection_onnxruntime_dynamic-batch-640x640.py')
    return cfg, _torch2onnx(cfg, model, tmp_path_factory.mktemp('ort_d'))


def _assert_exact(reports, batch):
    assert len(reports) == batch
    for r in reports:
        assert r['num_ref'] == r['num_test'] == NUM_QUERIES, r
        assert r['unmatched'] == 0, r
        assert r['max_box_diff'] <= BOX_TOL_PX, r
        assert r['max_score_diff'] <= SCORE_TOL, r


def test_query_selection_is_well_posed(model, ort_dynamic):
    """Precondition of the exactness tests: no near-tie at the top-k
    boundary of the two-stage query selection (batch 1 and 2)."""
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_input_shape
    name, model_cfg, ckpt = model
    deploy_cfg = ort_dynamic[0]
    processor = build_task_processor(
        Config.fromfile(model_cfg), deploy_cfg, 'cpu')
    torch_model = processor.build_pytorch_model(ckpt)
    branch = torch_model.bbox_head.cls_branches[torch_model.decoder.num_layers]
    gaps = []

    def record(module, args, logits):
        top = MODELS[name]['rank'](logits).topk(NUM_QUERIES + 1, dim=-1)[0]
        gaps.extend((top[:, -2] - top[:, -1]).tolist())

    handle = branch.register_forward_hook(record)
    try:
        for batch in (1, 2):
            data, _ = processor.create_input(images()[:batch],
                                             get_input_shape(deploy_cfg))
            with torch.no_grad():
                torch_model.test_step(data)
    finally:
        handle.remove()
    assert len(gaps) == 3 and min(gaps) > MIN_SELECTION_GAP, gaps


def test_graph_has_standard_ops_only(ort_static):
    _, path = ort_static
    assert custom_domain_ops(path) == []
    counts = op_type_counts(path)
    assert counts.get('GridSample', 0) > 0
    assert counts.get('TopK', 0) >= 2  # query selection + detections
    import onnx
    onnx.checker.check_model(onnx.load(path))


def test_ort_static_matches_pytorch(model, ort_static):
    from dfine_mmdet.deploy.verify import (compare_onnx_with_pytorch,
                                           compare_with_pytorch)
    _, model_cfg, ckpt = model
    cfg, path = ort_static
    img = images()[0]
    _assert_exact(compare_with_pytorch(cfg, model_cfg, ckpt, [path], img), 1)
    _assert_exact(
        compare_onnx_with_pytorch(cfg, model_cfg, ckpt, path, img), 1)


@pytest.mark.parametrize('batch', [1, 2])
def test_ort_dynamic_batch_matches_pytorch(model, ort_dynamic, batch):
    """Traced at batch 1, run at batch 1 and 2."""
    from dfine_mmdet.deploy.verify import compare_with_pytorch
    _, model_cfg, ckpt = model
    cfg, path = ort_dynamic
    _assert_exact(
        compare_with_pytorch(cfg, model_cfg, ckpt, [path],
                             images()[:batch]), batch)


def test_openvino_static_matches_pytorch(model, tmp_path):
    pytest.importorskip(
        'openvino',
        reason='openvino is not installed (tools/setup_env.sh installs it)')
    from mmdeploy.apis.utils import to_backend

    from dfine_mmdet.deploy.verify import compare_with_pytorch
    _, model_cfg, ckpt = model
    cfg = _deploy_cfg('detection_openvino_static-640x640.py')
    onnx_file = _torch2onnx(copy.deepcopy(cfg), model, tmp_path)
    ir = to_backend(
        'openvino', [onnx_file],
        work_dir=str(tmp_path),
        deploy_cfg=cfg,
        device='cpu')
    assert ir[0].endswith('.xml')
    _assert_exact(
        compare_with_pytorch(cfg, model_cfg, ckpt, ir,
                             images()[0]), 1)
