"""tools/deploy.py with a wrong deploy config or a missing checkpoint: one
line 'error: ...', exit status 1, no traceback (docs/reliability.md)."""
import os.path as osp

import pytest

ORT = 'configs/deploy/detection_onnxruntime_static-640x640.py'
MODEL = 'configs/dfine/dfine_hgnetv2_n_coco.py'


@pytest.mark.parametrize('args,expected', [
    ([MODEL, MODEL, 'none'],
     f'error: {MODEL} is not an MMDeploy detection deploy config: '
     'codebase_config type/task = None/None, expected mmdet/ObjectDetection '
     'with a backend_config (it looks like a model config: the order is '
     'DEPLOY_CFG MODEL_CFG CHECKPOINT); use configs/deploy/*.py'),
    (['configs/deploy/nope.py', MODEL, 'none'],
     'error: deploy config not found: configs/deploy/nope.py'),
    ([ORT, MODEL, 'checkpoints/missing.pth'],
     'error: checkpoint not found: checkpoints/missing.pth'),
])
def test_deploy_tool_clear_errors(args, expected, rel, tmp_path):
    rc, out = rel.run(['tools/deploy.py'] + args +
                      ['--work-dir', str(tmp_path / 'wd')])
    assert rc == 1, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]
    assert out.strip().splitlines()[-1] == expected
    assert not osp.exists(tmp_path / 'wd' / 'end2end.onnx')
