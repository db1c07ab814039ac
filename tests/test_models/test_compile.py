"""torch.compile readiness of the D-FINE network (issue 19).

The network forward -- backbone, hybrid encoder, query selection, contrastive
denoising queries, FDR decoder and head branches -- is captured by TorchDynamo
as ONE graph, in inference (``mode='tensor'``) and in training (with the
denoising queries built from the GT), at a tiny size (D-FINE-N, 64x64, 10
queries); tracing the ~400 modules still takes 1-3 minutes per test on a
loaded 2-core machine (``slow``).  The loss (scipy
Hungarian matching) is outside the network and may stay eager.  A compiled
(inductor) network must also reproduce the eager outputs.
"""
import os.path as osp

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'dfine', 'dfine_hgnetv2_n_coco.py')
TINY = dict(
    model=dict(
        num_queries=10,
        eval_spatial_size=(64, 64),
        dn_cfg=dict(num_denoising=10)))


@pytest.fixture(scope='module')
def tiny():
    from dfine_mmdet.benchmark.profiling import build_training
    torch.manual_seed(0)
    model, _, data = build_training(
        CONFIG, batch_size=2, size=64, num_gt=3, cfg_options=TINY)
    batch = model.data_preprocessor(data, True)
    return model, batch['inputs'], batch['data_samples']


def _explain(fn, *args):
    torch._dynamo.reset()
    out = torch._dynamo.explain(fn)(*args)
    reasons = [
        f'{b.reason} at {b.user_stack[-1] if b.user_stack else "?"}'
        for b in out.break_reasons
    ]
    return out, reasons


@pytest.mark.slow
def test_predict_network_is_one_graph(tiny):
    from dfine_mmdet.benchmark.gpu_check import TensorForward
    model, x, _ = tiny
    model.eval()
    out, reasons = _explain(TensorForward(model), x)
    assert out.graph_break_count == 0, reasons
    assert out.graph_count == 1


@pytest.mark.slow
def test_train_network_is_one_graph(tiny):
    """Training forward incl. the denoising queries built from the GT."""
    model, x, samples = tiny
    model.train()

    def network(inputs, data_samples):
        feats = model.extract_feat(inputs)
        head_inputs = model.forward_transformer(feats, data_samples)
        head_inputs.pop('dn_meta')  # python ints/lists for the loss
        return head_inputs

    out, reasons = _explain(network, x, samples)
    assert out.graph_break_count == 0, reasons
    assert out.graph_count == 1


@pytest.mark.slow
def test_compiled_network_matches_eager(tiny):
    from dfine_mmdet.benchmark.gpu_check import TensorForward
    model, x, _ = tiny
    model.eval()
    net = TensorForward(model)
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True)
    with torch.no_grad():
        want = net(x)
        got = compiled(x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
