"""The GridSample / LayerNormalization symbolic overrides on a tiny module.

MMDeploy 1.3.1 exports ``F.grid_sample`` as ``mmdeploy::grid_sampler`` for
every backend that lacks its own record. dfine_mmdet registers records for
``onnxruntime`` and ``tensorrt`` that emit the standard ONNX ``GridSample``.
The ``default`` backend is the control: MMDeploy's custom op is still
emitted there, which proves that the override is what makes the difference.
"""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmdeploy')
from mmdeploy.apis.onnx import export  # noqa: E402

import dfine_mmdet.deploy  # noqa: F401,E402  (registers the records)
from dfine_mmdet.deploy.graph_checks import op_type_counts  # noqa: E402


class _SampleAndNorm(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, x, grid):
        y = F.grid_sample(
            x,
            grid,
            mode='bilinear',
            padding_mode='zeros',
            align_corners=False)
        return self.norm(y)


def _export(tmp_path, backend, opset):
    torch.manual_seed(0)
    model = _SampleAndNorm().eval()
    x = torch.rand(2, 3, 5, 6)
    grid = torch.rand(2, 4, 4, 2) * 2.4 - 1.2  # some points outside
    prefix = str(tmp_path / f'{backend}_{opset}')
    export(
        model, (x, grid),
        prefix,
        backend=backend,
        input_names=['x', 'grid'],
        output_names=['y'],
        opset_version=opset,
        context_info=dict(
            deploy_cfg=dict(
                onnx_config=dict(type='onnx', opset_version=opset),
                backend_config=dict(type=backend))))
    return prefix + '.onnx', model, (x, grid)


@pytest.mark.parametrize('backend', ['onnxruntime', 'tensorrt'])
def test_native_grid_sample_and_layer_norm(tmp_path, backend):
    path, model, (x, grid) = _export(tmp_path, backend, 17)
    counts = op_type_counts(path)
    assert counts.get('GridSample') == 1
    assert counts.get('LayerNormalization') == 1
    assert not any('::' in k for k in counts), counts
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    out = sess.run(None, dict(x=x.numpy(), grid=grid.numpy()))[0]
    with torch.no_grad():
        ref = model(x, grid)
    assert torch.allclose(torch.from_numpy(out), ref, atol=1e-5)


def test_opset16_layer_norm_is_decomposed(tmp_path):
    path, _, _ = _export(tmp_path, 'onnxruntime', 16)
    counts = op_type_counts(path)
    assert counts.get('GridSample') == 1
    assert 'LayerNormalization' not in counts


def test_default_backend_keeps_mmdeploy_op(tmp_path):
    """Control: without a dfine_mmdet record, MMDeploy's symbolic wins."""
    path, _, _ = _export(tmp_path, 'default', 17)
    assert 'mmdeploy::grid_sampler' in op_type_counts(path)


def test_opset_below_16_is_rejected(tmp_path):
    with pytest.raises(Exception, match='opset >= 16'):
        _export(tmp_path, 'onnxruntime', 13)


def test_plain_onnxruntime_rejects_custom_op_graph(tmp_path):
    """Why it matters: MMDeploy's op needs its library to load at all."""
    import onnxruntime as ort
    path, _, _ = _export(tmp_path, 'default', 17)
    with pytest.raises(Exception, match='grid_sampler'):
        ort.InferenceSession(path, providers=['CPUExecutionProvider'])
