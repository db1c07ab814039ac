"""tools/deploy.py with a wrong deploy config or a missing checkpoint: one
line 'error: ...', exit status 1, no traceback; a deployed static graph fed
an input size it was not built for: one InputShapeMismatchError naming both
shapes and the deploy config (docs/reliability.md)."""
import os
import os.path as osp

import pytest
import torch

ORT = 'configs/deploy/detection_onnxruntime_static-640x640.py'
MODEL = 'configs/dfine/dfine_hgnetv2_n_coco.py'


@pytest.mark.parametrize('args,expected', [
    ([MODEL, MODEL, 'none'
      ], f'error: {MODEL} is not an MMDeploy detection deploy config: '
     'codebase_config type/task = None/None, expected mmdet/ObjectDetection '
     'with a backend_config (it looks like a model config: the order is '
     'DEPLOY_CFG MODEL_CFG CHECKPOINT); use configs/deploy/*.py'),
    (['configs/deploy/nope.py', MODEL, 'none'
      ], 'error: deploy config not found: configs/deploy/nope.py'),
    ([ORT, MODEL, 'checkpoints/missing.pth'
      ], 'error: checkpoint not found: checkpoints/missing.pth'),
])
def test_deploy_tool_clear_errors(args, expected, rel, tmp_path):
    rc, out = rel.run(['tools/deploy.py'] + args +
                      ['--work-dir', str(tmp_path / 'wd')])
    assert rc == 1, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]
    assert out.strip().splitlines()[-1] == expected
    assert not osp.exists(tmp_path / 'wd' / 'end2end.onnx')


# -- an input size the static graph was not built for ----------------------
# A tiny D-FINE-N (64x64, tests/test_tools/conftest.py) is exported with
# tools/deploy.py and a static 64x64 ONNX Runtime deploy config. The backend
# model is then fed through the *model* config's test pipeline, which resizes
# to 128x96: what a dataset evaluation of the backend model does (MMDeploy's
# create_input(imgs, input_shape) would have resized to 64x64 instead).

STATIC_64 = """\
_base_ = [{ort!r}]
onnx_config = dict(input_shape=(64, 64))
"""

OTHER_TEST_SIZE = """
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='Resize', scale=(128, 96), keep_ratio=False, backend='pillow'),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
"""


@pytest.fixture(scope='module')
def static_64(toy_coco, tmp_path_factory, rel):
    """(deploy config, model config at 64, model config at 128x96, work dir
    with end2end.onnx and end2end.xml)."""
    tmp = tmp_path_factory.mktemp('static64')
    deploy = tmp / 'detection_onnxruntime_static-64x64.py'
    deploy.write_text(STATIC_64.format(ort=osp.join(rel.root, ORT)))
    model = tmp / 'tiny64.py'
    model.write_text(rel.config_text(toy_coco + '/'))
    other = tmp / 'tiny128x96.py'
    other.write_text(f'_base_ = [{str(model)!r}]\n' + OTHER_TEST_SIZE)
    wd = tmp / 'wd'
    rc, out = rel.run([
        'tools/deploy.py',
        str(deploy),
        str(model), 'none', '--work-dir',
        str(wd)
    ])
    assert rc == 0, out[-3000:]
    from dfine_mmdet.deploy.backends.openvino import convert_onnx_to_ir
    convert_onnx_to_ir(str(wd / 'end2end.onnx'), str(wd / 'end2end.xml'))
    return str(deploy), str(model), str(other), wd


@pytest.mark.slow
@pytest.mark.parametrize('backend_file', ['end2end.onnx', 'end2end.xml'])
def test_input_size_the_static_graph_was_not_built_for(static_64, backend_file,
                                                       toy_coco):
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_input_shape, load_config

    from dfine_mmdet.deploy.input_shape_check import InputShapeMismatchError
    deploy, model, other, wd = static_64
    img = osp.join(toy_coco, 'val',
                   sorted(os.listdir(osp.join(toy_coco, 'val')))[0])
    if backend_file.endswith('.xml'):
        # the same graph as an OpenVINO IR (backend_config type openvino)
        deploy_cfg = load_config(deploy)[0]
        deploy_cfg.backend_config = dict(type='openvino')
        deploy_cfg.filename = deploy  # named in the error
    else:
        deploy_cfg = deploy
    deploy_cfg, other_cfg, model_cfg = (
        load_config(deploy_cfg, other) + load_config(model)[:1])
    files = [str(wd / backend_file)]

    # control: the model config's own size (64x64) runs
    proc = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    backend = proc.build_backend_model(files, proc.update_data_preprocessor)
    data, _ = proc.create_input([img], input_shape=None)
    assert data['inputs'][0].shape[-2:] == (64, 64)
    with torch.no_grad():
        res = backend.test_step(data)
    num_dets = len(res[0].pred_instances.scores)
    assert len(res) == 1 and num_dets > 0

    # evaluation through a model config that resizes to 128x96
    proc = build_task_processor(other_cfg, deploy_cfg, 'cpu')
    backend = proc.build_backend_model(files, proc.update_data_preprocessor)
    data, _ = proc.create_input([img], input_shape=None)
    assert data['inputs'][0].shape[-2:] == (96, 128)
    with pytest.raises(InputShapeMismatchError) as info:
        with torch.no_grad():
            backend.test_step(data)
    msg = str(info.value)
    assert msg.startswith(f"{files[0]}: input 'input' has shape "
                          '(1, 3, 96, 128), but the graph was built for '
                          '(1, 3, 64, 64)'), msg
    assert f'deploy config: {deploy} (onnx_config.input_shape=(64, 64))' \
        in msg, msg
    assert 'Resize the images to 64x64 (WxH)' in msg, msg

    # MMDeploy's own input path resizes to the deploy config's input_shape
    data, _ = proc.create_input([img], get_input_shape(deploy_cfg))
    assert data['inputs'][0].shape[-2:] == (64, 64)
    with torch.no_grad():
        res = backend.test_step(data)
    assert len(res[0].pred_instances.scores) == num_dets
