"""D-FINE-N through MMDeploy on CPU: ONNX graph contents and exactness.

The model is the random D-FINE-N of ``deploy_fixtures.py`` (640x640).

* ONNX Runtime static (batch 1) and dynamic batch (batch 1 and 2) graphs are
  exported with MMDeploy's own ``torch2onnx``. They run in MMDeploy's
  ``End2EndModel`` and in a plain ONNX Runtime session without MMDeploy's op
  library, and are compared with the unmodified PyTorch ``test_step``:
  identical labels (every detection paired), boxes within 1e-3 px, scores
  within 1e-4.
* The TensorRT FP16 dynamic-batch graph is exported on CPU
  (``dfine_mmdet.deploy.export.export_onnx``). It is checked statically
  against the TensorRT 10 ONNX parser's op list and for constant TopK K, run
  with ONNX Runtime at batch 2 against PyTorch, and passed through the FP16
  builder shim with the stand-in TensorRT module to count the layers kept in
  FP32. No real TensorRT runs here.
"""
import os.path as osp
import sys

import pytest
import torch

pytest.importorskip('mmdeploy')
pytest.importorskip('onnxruntime')

import onnx  # noqa: E402
from deploy_fixtures import ORT_STATIC  # noqa: E402
from deploy_fixtures import MODEL_CFG, ORT_DYNAMIC, TRT_FP16_DYNAMIC, images

from dfine_mmdet.deploy.backends import tensorrt as trt_shims  # noqa: E402
from dfine_mmdet.deploy.graph_checks import check_graph  # noqa: E402
from dfine_mmdet.deploy.graph_checks import custom_domain_ops, op_type_counts

# smallest allowed gap between the 300th and 301st encoder score (logits);
# float32 noise between batch sizes / backends is ~1e-5
MIN_SELECTION_GAP = 1e-4
BOX_TOL_PX = 1e-3
SCORE_TOL = 1e-4
# D-FINE-N: 3 decoder layers x 2 feature levels of deformable sampling
NUM_GRID_SAMPLE = 6


def _selection_gaps(checkpoint, imgs):
    """Gap between the ``num_queries``-th and the next encoder score
    (max-over-classes logit) of each image, as PyTorch computes them with
    ``imgs`` run as one batch through MMDeploy's preprocessing."""
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_input_shape, load_config
    deploy_cfg, model_cfg = load_config(ORT_DYNAMIC, MODEL_CFG)
    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    model = processor.build_pytorch_model(checkpoint)
    data, _ = processor.create_input(imgs, get_input_shape(deploy_cfg))
    gaps = []

    def record(module, args, enc_logits):
        # the logits whose max over classes pre_decoder's top-k ranks
        top = enc_logits.max(-1).values.topk(
            model.num_queries + 1, dim=-1).values
        gaps.extend((top[:, -2] - top[:, -1]).tolist())

    handle = model.bbox_head.enc_cls_branch.register_forward_hook(record)
    try:
        with torch.no_grad():
            model.test_step(data)
    finally:
        handle.remove()
    return gaps


def _torch2onnx(deploy_cfg, checkpoint, work_dir):
    from mmdeploy.apis import torch2onnx
    torch2onnx(images()[0], str(work_dir), 'end2end.onnx', deploy_cfg,
               MODEL_CFG, checkpoint, 'cpu')
    return str(work_dir / 'end2end.onnx')


@pytest.fixture(scope='module')
def ort_static_onnx(checkpoint, tmp_path_factory):
    return _torch2onnx(ORT_STATIC, checkpoint,
                       tmp_path_factory.mktemp('ort_static'))


@pytest.fixture(scope='module')
def ort_dynamic_onnx(checkpoint, tmp_path_factory):
    return _torch2onnx(ORT_DYNAMIC, checkpoint,
                       tmp_path_factory.mktemp('ort_dynamic'))


@pytest.fixture(scope='module')
def trt_fp16_onnx(checkpoint, tmp_path_factory):
    from dfine_mmdet.deploy.export import export_onnx
    return export_onnx(images()[0], str(tmp_path_factory.mktemp('trt16')),
                       'end2end.onnx', TRT_FP16_DYNAMIC, MODEL_CFG, checkpoint)


def test_query_selection_is_well_posed(checkpoint):
    """Precondition of the exactness tests below: no near-tie at the top-k
    boundary of query selection, at batch 1 and batch 2."""
    for batch in (1, 2):
        gaps = _selection_gaps(checkpoint, images()[:batch])
        assert min(gaps) > MIN_SELECTION_GAP, (batch, gaps)


def _assert_exact(reports, batch):
    assert len(reports) == batch
    for r in reports:
        assert r['num_ref'] == r['num_test'] == 300
        assert r['unmatched'] == 0, r  # every (label, score, box) paired
        assert r['max_box_diff'] <= BOX_TOL_PX, r
        assert r['max_score_diff'] <= SCORE_TOL, r


def _io_shapes(path):
    """Declared input/output dims. The torch exporter cannot infer K (300)
    through the top-k chain, so output dim 1 is symbolic; its run-time size
    is checked by the comparisons (``num_test == 300``)."""
    model = onnx.load(path)

    def dims(value_info):
        return [
            d.dim_param or d.dim_value
            for d in value_info.type.tensor_type.shape.dim
        ]

    return ({
        i.name: dims(i)
        for i in model.graph.input
    }, {
        o.name: dims(o)
        for o in model.graph.output
    })


def test_static_graph_io_and_ops(ort_static_onnx):
    inputs, outputs = _io_shapes(ort_static_onnx)
    assert inputs == {'input': [1, 3, 640, 640]}
    assert outputs['dets'][2] == 5 and len(outputs['labels']) == 2
    counts = op_type_counts(ort_static_onnx)
    assert custom_domain_ops(ort_static_onnx) == []
    assert counts.get('GridSample') == NUM_GRID_SAMPLE
    assert counts.get('LayerNormalization', 0) > 0
    onnx.checker.check_model(onnx.load(ort_static_onnx))


def test_dynamic_graph_io(ort_dynamic_onnx):
    inputs, outputs = _io_shapes(ort_dynamic_onnx)
    assert inputs == {'input': ['batch', 3, 640, 640]}
    assert outputs['dets'][0] == outputs['labels'][0] == 'batch'
    assert outputs['dets'][2] == 5
    assert custom_domain_ops(ort_dynamic_onnx) == []


def test_ort_static_matches_pytorch(ort_static_onnx, checkpoint):
    from dfine_mmdet.deploy.verify import (compare_onnx_with_pytorch,
                                           compare_with_pytorch)
    img = images()[0]
    # MMDeploy's End2EndModel (the path of mmdeploy's tools/test.py)
    _assert_exact(
        compare_with_pytorch(ORT_STATIC, MODEL_CFG, checkpoint,
                             [ort_static_onnx], img), 1)
    # plain onnxruntime session: no MMDeploy custom-op library loaded
    _assert_exact(
        compare_onnx_with_pytorch(ORT_STATIC, MODEL_CFG, checkpoint,
                                  ort_static_onnx, img), 1)


@pytest.mark.parametrize('batch', [1, 2])
def test_ort_dynamic_batch_matches_pytorch(ort_dynamic_onnx, checkpoint,
                                           batch):
    """Traced at batch 1 (as tools/deploy.py does), run at batch 1 and 2."""
    from dfine_mmdet.deploy.verify import compare_with_pytorch
    reports = compare_with_pytorch(ORT_DYNAMIC, MODEL_CFG, checkpoint,
                                   [ort_dynamic_onnx],
                                   images()[:batch])
    _assert_exact(reports, batch)


def test_tensorrt_graph_checks(trt_fp16_onnx):
    report = check_graph(trt_fp16_onnx, 'tensorrt')
    assert report['custom_ops'] == []
    assert report['unsupported_tensorrt_ops'] == []
    assert report['non_constant_topk'] == []
    assert report['ok']
    assert report['op_counts'].get('GridSample') == NUM_GRID_SAMPLE
    inputs, outputs = _io_shapes(trt_fp16_onnx)
    assert inputs == {'input': ['batch', 3, 640, 640]}
    assert outputs['dets'][0] == outputs['labels'][0] == 'batch'


def test_tensorrt_graph_matches_pytorch_in_ort(trt_fp16_onnx, checkpoint):
    """The TensorRT-flavoured graph has only standard ops, so ONNX Runtime
    can run it. Batch 2, traced at batch 1."""
    from dfine_mmdet.deploy.verify import compare_onnx_with_pytorch
    _assert_exact(
        compare_onnx_with_pytorch(TRT_FP16_DYNAMIC, MODEL_CFG, checkpoint,
                                  trt_fp16_onnx, images()), 2)


def test_tensorrt_fp16_builder_pins_layers(trt_fp16_onnx, tmp_path):
    """FP16 config: every LayerNormalization and Softmax node is kept in FP32
    (stand-in TensorRT module, not real TensorRT)."""
    from mmdeploy.utils import get_common_config, get_model_inputs, load_config
    sys.path.insert(0, osp.dirname(__file__))
    import fake_tensorrt
    cfg = load_config(TRT_FP16_DYNAMIC)[0]
    common = get_common_config(cfg)
    pinned = trt_shims.build_tensorrt_engine(
        trt_fp16_onnx,
        str(tmp_path / 'end2end.engine'),
        get_model_inputs(cfg)[0]['input_shapes'],
        fp16_mode=common['fp16_mode'],
        max_workspace_size=common['max_workspace_size'],
        fp32_layer_types=common['fp32_layer_types'],
        fp32_layer_name_patterns=common['fp32_layer_name_patterns'],
        trt_module=fake_tensorrt)
    counts = op_type_counts(trt_fp16_onnx)
    expected = counts['LayerNormalization'] + counts['Softmax']
    assert len(pinned) == expected > 0
    assert fake_tensorrt.Builder.last.config.flags == {'FP16', 'OBEY'}
